package journal

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The seed corpus lives in testdata/fuzz/FuzzDecodeWAL; `go test` runs it
// as ordinary subtests. Regenerate it with
//
//	go test ./journal -run TestFuzzDecodeWALSeeds -update-fuzz-seeds
var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite testdata/fuzz/FuzzDecodeWAL from fuzzSeeds")

const fuzzSeedDir = "testdata/fuzz/FuzzDecodeWAL"

// fuzzSeed is one seed with what decodeWAL must make of it.
type fuzzSeed struct {
	name    string
	data    []byte
	entries int // entries in the valid prefix
	valid   int // length of the valid prefix
}

// fuzzSeeds builds the seed corpus from real encoded frames.
func fuzzSeeds(t testing.TB) []fuzzSeed {
	l := sampleLog(t)
	n := len(l.starts)
	last := l.starts[n-1]
	var seeds []fuzzSeed
	add := func(name string, data []byte, entries, valid int) {
		seeds = append(seeds, fuzzSeed{name, data, entries, valid})
	}

	add("empty", []byte{}, 0, 0)
	add("valid_all_kinds", bytes.Clone(l.buf), n, len(l.buf))

	one, err := encodeRecord(nil, 0, &Record{Seq: 1, Epoch: 1, Op: OpCreate, Path: "a", Mode: ptr(uint32(0o644))})
	if err != nil {
		t.Fatal(err)
	}
	add("valid_one_record", one, 1, len(one))

	dc := append(appendFrame(nil, kindDone, u64(3)), appendFrame(nil, kindClose, u64(9), u64(12))...)
	add("valid_done_close", dc, 2, len(dc))

	// Torn: cut inside the last frame's header, and inside its body.
	add("torn_in_header", bytes.Clone(l.buf[:last+5]), n-1, last)
	add("torn_in_body", bytes.Clone(l.buf[:last+(len(l.buf)-last)/2]), n-1, last)
	add("torn_last_byte", bytes.Clone(l.buf[:len(l.buf)-1]), n-1, last)

	// A flipped bit in the third frame's payload: the CRC ends the log.
	flip := bytes.Clone(l.buf)
	flip[l.starts[2]+frameHeader+3] ^= 0x10
	add("bitflip_third_frame", flip, 2, l.starts[2])

	// A flipped bit in a CRC.
	crc := bytes.Clone(l.buf)
	crc[l.starts[1]+4] ^= 1
	add("bitflip_crc", crc, 1, l.starts[1])

	// A length field past maxFrame after one good frame.
	huge := bytes.Clone(one)
	huge = append(huge, frameWithLength(maxFrame+1, []byte{byte(kindDone), 1, 0, 0, 0, 0, 0, 0, 0})...)
	add("length_past_max", huge, 1, len(one))

	add("length_zero", frameWithLength(0, nil), 0, 0)

	// Right CRC, wrong payload.
	add("unknown_kind", append(bytes.Clone(one), appendFrame(nil, 'Z', u64(1))...), 1, len(one))
	add("record_bad_json", appendFrame(nil, kindRecord, u64(0), []byte(`{"seq":1,"op":`)), 0, 0)

	// Valid log followed by garbage, and pure garbage.
	rng := rand.New(rand.NewPCG(7, 7))
	garbage := make([]byte, 200)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	add("valid_then_garbage", append(bytes.Clone(l.buf), garbage...), n, len(l.buf))
	add("garbage", garbage, 0, 0)

	// An unfinished intent: what recovery turns into resync records.
	in := appendFrame(nil, kindIntent, []byte(`{"id":5,"op":"rename","paths":["a","b"]}`))
	add("open_intent", in, 1, len(in))
	return seeds
}

// marshalSeed renders data in the `go test fuzz v1` corpus format.
func marshalSeed(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(data)))
}

// unmarshalSeed parses a corpus file holding one []byte value.
func unmarshalSeed(b []byte) ([]byte, error) {
	s, ok := strings.CutPrefix(string(b), "go test fuzz v1\n")
	if !ok {
		return nil, errors.New("missing header")
	}
	s = strings.TrimSpace(s)
	s, ok = strings.CutPrefix(s, "[]byte(")
	if !ok || !strings.HasSuffix(s, ")") {
		return nil, errors.New("not a []byte value")
	}
	v, err := strconv.Unquote(strings.TrimSuffix(s, ")"))
	return []byte(v), err
}

// TestFuzzDecodeWALSeeds checks the corpus on disk: every seed file is
// one the generator makes, and each decodes to the expected prefix.
func TestFuzzDecodeWALSeeds(t *testing.T) {
	seeds := fuzzSeeds(t)
	if *updateFuzzSeeds {
		if err := os.MkdirAll(fuzzSeedDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range seeds {
			if err := os.WriteFile(filepath.Join(fuzzSeedDir, s.name), marshalSeed(s.data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, s := range seeds {
		t.Run(s.name, func(t *testing.T) {
			es, valid := decodeWAL(s.data)
			if len(es) != s.entries || valid != s.valid {
				t.Fatalf("decodeWAL = %d entries, valid %d; want %d, %d", len(es), valid, s.entries, s.valid)
			}
			b, err := os.ReadFile(filepath.Join(fuzzSeedDir, s.name))
			if err != nil {
				t.Fatalf("seed file missing (run with -update-fuzz-seeds): %v", err)
			}
			data, err := unmarshalSeed(b)
			if err != nil {
				t.Fatalf("parse seed file: %v", err)
			}
			if !bytes.Equal(data, s.data) {
				t.Fatalf("seed file is stale (run with -update-fuzz-seeds)")
			}
		})
	}
}

func FuzzDecodeWAL(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		// Cap the capacity so reslicing past the end panics.
		data = data[:len(data):len(data)]
		es, valid := decodeWAL(data)
		if valid < 0 || valid > len(data) {
			t.Fatalf("valid = %d, len = %d", valid, len(data))
		}
		if len(es) == 0 && valid != 0 {
			t.Fatalf("no entries but valid = %d", valid)
		}

		// The valid prefix decodes again to the same entries, wholly.
		prefix := data[:valid:valid]
		es2, valid2 := decodeWAL(prefix)
		if len(es2) != len(es) || valid2 != valid {
			t.Fatalf("prefix: %d entries, valid %d; first pass %d, %d", len(es2), valid2, len(es), valid)
		}

		// The prefix is a sequence of whole frames, each one entry.
		off := 0
		for i, e := range es {
			e1, n, err := decodeFrame(data[off:])
			if err != nil {
				t.Fatalf("frame %d at %d: %v", i, off, err)
			}
			if e1.kind != e.kind {
				t.Fatalf("frame %d: kind %q, first pass %q", i, e1.kind, e.kind)
			}
			frame := data[off : off+n]
			switch e.kind {
			case kindRecord:
				if e.rec == nil {
					t.Fatalf("frame %d: record entry without record", i)
				}
			case kindIntent:
				if e.intent == nil {
					t.Fatalf("frame %d: intent entry without intent", i)
				}
			case kindDone:
				// Fixed layout: re-encoding gives the same bytes.
				if re := appendFrame(nil, kindDone, u64(e.intentID)); !bytes.Equal(re, frame) {
					t.Fatalf("frame %d: done re-encodes to %x, was %x", i, re, frame)
				}
			case kindClose:
				if re := appendFrame(nil, kindClose, u64(e.ino), u64(e.openSeq)); !bytes.Equal(re, frame) {
					t.Fatalf("frame %d: close re-encodes to %x, was %x", i, re, frame)
				}
			default:
				t.Fatalf("frame %d: unknown kind %q accepted", i, e.kind)
			}
			off += n
		}
		if off != valid {
			t.Fatalf("frames end at %d, valid = %d", off, valid)
		}
		// Whatever follows the valid prefix is rejected as torn.
		if valid < len(data) {
			if _, _, err := decodeFrame(data[valid:]); !errors.Is(err, errTorn) {
				t.Fatalf("tail at %d: err = %v, want errTorn", valid, err)
			}
		}
		// Appending more bytes never shrinks the valid prefix.
		more := append(slices.Clip(data), 0, 0, 0, 0)
		if _, v := decodeWAL(more); v < valid {
			t.Fatalf("appending bytes shrank the valid prefix from %d to %d", valid, v)
		}
	})
}
