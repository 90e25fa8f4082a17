package failover

import (
	"strings"
	"testing"
)

var (
	idA = strings.Repeat("a", 64)
	idB = strings.Repeat("b", 64)
	idC = strings.Repeat("c", 64)
)

func TestFork(t *testing.T) {
	h1 := History{{Epoch: 1, Start: 0, Primary: idA}}
	h2 := h1.With(2, 5000, idB)    // b promoted at 5000
	h2c := h1.With(2, 5000, idC)   // c promoted at 5000 too: a split brain
	h3 := h2.With(3, 5200, idA)    // a back as primary at 5200
	hLate := h1.With(2, 4800, idB) // b promoted at 4800
	for _, tc := range []struct {
		name   string
		ha     History
		a      uint64
		hb     History
		b      uint64
		fork   uint64
		ahead  uint64 // of (hb, b) over (ha, a)
		behind bool
	}{
		{"same history", h1, 300, h1, 500, 300, 200, false},
		{"same position", h2, 5100, h2, 5100, 5100, 0, false},
		{"old primary wrote past the promotion", h1, 5100, h2, 5300, 5000, 0, false},
		{"secondary behind the promotion", h1, 4700, h2, 5300, 4700, 600, false},
		{"secondary ahead of the promoted one", hLate, 4800, h1, 5000, 4800, 200, false},
		{"split brain at one epoch", h2, 5100, h2c, 5100, 5000, 0, false},
		{"history extended twice", h1, 5000, h3, 5300, 5000, 300, false},
		{"empty history", nil, 0, h2, 10, 0, 10, false},
		{"unknown history", nil, 7, h1, 10, 0, 0, false},
		{"different first primaries", h1, 10, History{{Epoch: 1, Primary: idB}}, 10, 0, 0, false},
	} {
		if got := Fork(tc.ha, tc.a, tc.hb, tc.b); got != tc.fork {
			t.Errorf("%s: Fork = %d, want %d", tc.name, got, tc.fork)
		}
		if got := Fork(tc.hb, tc.b, tc.ha, tc.a); got != tc.fork {
			t.Errorf("%s: Fork reversed = %d, want %d", tc.name, got, tc.fork)
		}
		if got := Ahead(tc.ha, tc.a, tc.hb, tc.b); got != tc.ahead {
			t.Errorf("%s: Ahead = %d, want %d", tc.name, got, tc.ahead)
		}
	}
}

func TestHistoryWith(t *testing.T) {
	h := History{{Epoch: 1, Primary: idA}, {Epoch: 2, Start: 100, Primary: idB}}
	got := h.With(3, 50, idC) // a position before epoch 2 began
	want := History{{Epoch: 1, Primary: idA}, {Epoch: 3, Start: 50, Primary: idC}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("With = %v, want %v", got, want)
	}
	if len(h) != 2 {
		t.Error("With changed its receiver")
	}
	if e := h.EpochAt(100); e != 1 {
		t.Errorf("EpochAt(100) = %d, want 1", e)
	}
	if e := h.EpochAt(101); e != 2 {
		t.Errorf("EpochAt(101) = %d, want 2", e)
	}
}
