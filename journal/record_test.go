package journal

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// checkRanges fails unless rs is sorted, non-overlapping, non-touching and
// made of positive lengths.
func checkRanges(t *testing.T, rs []Range) {
	t.Helper()
	for i, r := range rs {
		if r[1] <= 0 {
			t.Fatalf("range %d %v has length %d", i, r, r[1])
		}
		if i > 0 && rs[i-1].End() >= r[0] {
			t.Fatalf("ranges %d %v and %d %v overlap or touch", i-1, rs[i-1], i, r)
		}
	}
}

func TestAddRange(t *testing.T) {
	tests := []struct {
		name string
		add  []Range
		want []Range
	}{
		{"single", []Range{{10, 5}}, []Range{{10, 5}}},
		{"zero length ignored", []Range{{10, 0}}, nil},
		{"negative length ignored", []Range{{10, -3}}, nil},
		{"zero length between", []Range{{0, 5}, {7, 0}, {10, 5}}, []Range{{0, 5}, {10, 5}}},
		{"zero length at edge", []Range{{0, 5}, {5, 0}}, []Range{{0, 5}}},
		{"disjoint in order", []Range{{0, 5}, {10, 5}, {20, 5}}, []Range{{0, 5}, {10, 5}, {20, 5}}},
		{"disjoint reverse order", []Range{{20, 5}, {10, 5}, {0, 5}}, []Range{{0, 5}, {10, 5}, {20, 5}}},
		{"disjoint middle insert", []Range{{0, 5}, {20, 5}, {10, 5}}, []Range{{0, 5}, {10, 5}, {20, 5}}},
		{"touching after", []Range{{0, 5}, {5, 5}}, []Range{{0, 10}}},
		{"touching before", []Range{{5, 5}, {0, 5}}, []Range{{0, 10}}},
		{"touching both sides", []Range{{0, 5}, {10, 5}, {5, 5}}, []Range{{0, 15}}},
		{"overlap tail", []Range{{0, 10}, {5, 10}}, []Range{{0, 15}}},
		{"overlap head", []Range{{5, 10}, {0, 10}}, []Range{{0, 15}}},
		{"contained", []Range{{0, 100}, {10, 5}}, []Range{{0, 100}}},
		{"containing", []Range{{10, 5}, {0, 100}}, []Range{{0, 100}}},
		{"duplicate", []Range{{10, 5}, {10, 5}}, []Range{{10, 5}}},
		{"spans many", []Range{{0, 2}, {10, 2}, {20, 2}, {30, 2}, {40, 2}, {11, 20}}, []Range{{0, 2}, {10, 22}, {40, 2}}},
		{"spans all", []Range{{0, 2}, {10, 2}, {20, 2}, {-5, 100}}, []Range{{-5, 100}}},
		{"gap of one kept", []Range{{0, 5}, {6, 5}}, []Range{{0, 5}, {6, 5}}},
		{"bridges gap", []Range{{0, 5}, {6, 5}, {5, 1}}, []Range{{0, 11}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rs []Range
			for _, r := range tt.add {
				rs = AddRange(rs, r[0], r[1])
			}
			if !slices.Equal(rs, tt.want) {
				t.Fatalf("got %v, want %v", rs, tt.want)
			}
		})
	}
}

// TestAddRangeRandom compares AddRange against a bitmap model.
func TestAddRangeRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 300; iter++ {
		const size = 512
		var model [size]bool
		var rs []Range
		for k := 0; k < 1+rng.IntN(40); k++ {
			off := rng.Int64N(size - 32)
			n := rng.Int64N(32)
			rs = AddRange(rs, off, n)
			for b := off; b < off+n; b++ {
				model[b] = true
			}
			checkRanges(t, rs)
		}
		var got [size]bool
		for _, r := range rs {
			for b := r[0]; b < r.End(); b++ {
				got[b] = true
			}
		}
		if got != model {
			t.Fatalf("iteration %d: ranges %v do not match the bytes written", iter, rs)
		}
	}
}

func TestAddRangeMaxRanges(t *testing.T) {
	const n = 5000
	// Disjoint ranges of varying gaps, added in a shuffled order.
	type add struct{ off, n int64 }
	adds := make([]add, n)
	off := int64(0)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range adds {
		l := 1 + rng.Int64N(8)
		adds[i] = add{off, l}
		off += l + 1 + rng.Int64N(100)
	}
	lastEnd := adds[n-1].off + adds[n-1].n
	rng.Shuffle(len(adds), func(i, k int) { adds[i], adds[k] = adds[k], adds[i] })

	var rs []Range
	for i, a := range adds {
		rs = AddRange(rs, a.off, a.n)
		if len(rs) > MaxRanges {
			t.Fatalf("after %d adds: %d ranges, want <= %d", i+1, len(rs), MaxRanges)
		}
	}
	checkRanges(t, rs)
	if len(rs) != MaxRanges {
		t.Errorf("got %d ranges, want exactly %d (5000 disjoint adds)", len(rs), MaxRanges)
	}
	// The union still covers every added byte.
	for _, a := range adds {
		i, _ := slices.BinarySearchFunc(rs, a.off, func(r Range, off int64) int {
			switch {
			case r.End() <= off:
				return -1
			case r[0] > off:
				return 1
			}
			return 0
		})
		if i == len(rs) || rs[i][0] > a.off || rs[i].End() < a.off+a.n {
			t.Fatalf("added range [%d,+%d) not covered by %v", a.off, a.n, rs[max(0, i-1):min(len(rs), i+2)])
		}
	}
	// Nothing before the first or past the last added byte.
	if rs[0][0] != 0 || rs[len(rs)-1].End() != lastEnd {
		t.Errorf("union spans [%d,%d), want [0,%d)", rs[0][0], rs[len(rs)-1].End(), lastEnd)
	}
}

func TestMergeRanges(t *testing.T) {
	rs := MergeRanges([]Range{{0, 5}, {20, 5}}, []Range{{5, 5}, {30, 5}, {0, 0}})
	want := []Range{{0, 10}, {20, 5}, {30, 5}}
	if !slices.Equal(rs, want) {
		t.Fatalf("got %v, want %v", rs, want)
	}
	if got := MergeRanges(nil, nil); got != nil {
		t.Fatalf("MergeRanges(nil, nil) = %v", got)
	}
}

func TestClipRanges(t *testing.T) {
	base := []Range{{0, 10}, {20, 10}, {40, 10}}
	tests := []struct {
		size int64
		want []Range
	}{
		{0, []Range{}},
		{5, []Range{{0, 5}}},
		{10, []Range{{0, 10}}},
		{15, []Range{{0, 10}}},
		{20, []Range{{0, 10}}},
		{21, []Range{{0, 10}, {20, 1}}},
		{45, []Range{{0, 10}, {20, 10}, {40, 5}}},
		{50, []Range{{0, 10}, {20, 10}, {40, 10}}},
		{1 << 40, []Range{{0, 10}, {20, 10}, {40, 10}}},
	}
	for _, tt := range tests {
		got := ClipRanges(slices.Clone(base), tt.size)
		if !slices.Equal(got, tt.want) {
			t.Errorf("ClipRanges(%v, %d) = %v, want %v", base, tt.size, got, tt.want)
		}
		checkRanges(t, got)
	}
	if got := ClipRanges(nil, 10); len(got) != 0 {
		t.Errorf("ClipRanges(nil) = %v", got)
	}
}

func TestRangeEnd(t *testing.T) {
	if e := (Range{7, 3}).End(); e != 10 {
		t.Fatalf("End = %d", e)
	}
}
