package journal

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

// fullRecord returns a record with every field set.
func fullRecord() *Record {
	tm := time.Date(2024, 3, 1, 12, 30, 45, 123456789, time.UTC)
	at := tm.Add(-time.Hour)
	return &Record{
		Seq: 42, Epoch: 3, Time: tm,
		Op: OpRename, Path: "dir/a b", NewPath: "dir2/ü\x00x",
		Ino: 1 << 40, Ranges: []Range{{0, 10}, {20, 5}},
		Open: true, Whole: true,
		Mode: ptr(uint32(0o4755)), UID: ptr(uint32(1000)), GID: ptr(uint32(0)),
		Size: ptr(uint64(1 << 33)), Atime: &at, Mtime: &tm,
		Rdev: 0x0801, Target: "../t", Xattr: "user.x", Value: []byte{0, 1, 2, 255},
		Flags: 2,
	}
}

// testLog is a log of every kind of frame, with the offset where each
// frame starts.
type testLog struct {
	buf    []byte
	starts []int
	want   []walEntry
}

func (l *testLog) add(t testing.TB, e walEntry) {
	t.Helper()
	l.starts = append(l.starts, len(l.buf))
	var err error
	switch e.kind {
	case kindRecord:
		l.buf, err = encodeRecord(l.buf, e.intentID, e.rec)
	case kindIntent:
		js, jerr := json.Marshal(e.intent)
		if jerr != nil {
			t.Fatal(jerr)
		}
		l.buf = appendFrame(l.buf, kindIntent, js)
	case kindDone:
		l.buf = appendFrame(l.buf, kindDone, u64(e.intentID))
	case kindClose:
		l.buf = appendFrame(l.buf, kindClose, u64(e.ino), u64(e.openSeq))
	default:
		t.Fatalf("unknown kind %q", e.kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	l.want = append(l.want, e)
}

// sampleLog builds a log holding every kind of frame.
func sampleLog(t testing.TB) *testLog {
	l := new(testLog)
	l.add(t, walEntry{kind: kindIntent, intent: &walIntent{ID: 1, Op: OpRename, Paths: []string{"a", "b/c"}}})
	l.add(t, walEntry{kind: kindRecord, intentID: 1, rec: fullRecord()})
	l.add(t, walEntry{kind: kindRecord, rec: &Record{Seq: 43, Epoch: 3, Op: OpWrite, Path: "f", Ino: 7, Ranges: []Range{{0, 4096}}, Open: true}})
	l.add(t, walEntry{kind: kindIntent, intent: &walIntent{ID: 2, Op: OpUnlink, Paths: []string{"x"}}})
	l.add(t, walEntry{kind: kindDone, intentID: 2})
	l.add(t, walEntry{kind: kindClose, ino: 7, openSeq: 43})
	l.add(t, walEntry{kind: kindRecord, intentID: 0, rec: &Record{Seq: 44, Epoch: 3, Op: OpMkdir, Path: "d", Mode: ptr(uint32(0o755))}})
	return l
}

func entriesEqual(t *testing.T, got, want []walEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("entry %d:\n got %+v\nwant %+v", i, describe(got[i]), describe(want[i]))
		}
	}
}

func describe(e walEntry) string {
	var b strings.Builder
	b.WriteString(string(e.kind))
	if e.rec != nil {
		b.WriteString(" " + e.rec.String())
	}
	if e.intent != nil {
		js, _ := json.Marshal(e.intent)
		b.WriteString(" " + string(js))
	}
	b.WriteString(" intent=" + itoa(e.intentID) + " ino=" + itoa(e.ino) + " openSeq=" + itoa(e.openSeq))
	return b.String()
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

func TestFrameRoundTrip(t *testing.T) {
	l := sampleLog(t)
	// Each frame decodes alone to its entry.
	for i, start := range l.starts {
		end := len(l.buf)
		if i+1 < len(l.starts) {
			end = l.starts[i+1]
		}
		e, n, err := decodeFrame(l.buf[start:end])
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if n != end-start {
			t.Fatalf("frame %d: size %d, want %d", i, n, end-start)
		}
		entriesEqual(t, []walEntry{e}, []walEntry{l.want[i]})
		// Trailing bytes do not change the frame.
		e2, n2, err := decodeFrame(append(l.buf[start:end:end], 0xde, 0xad))
		if err != nil || n2 != n || !reflect.DeepEqual(e, e2) {
			t.Fatalf("frame %d with trailing bytes: %v, %d", i, err, n2)
		}
	}
	got, valid := decodeWAL(l.buf)
	if valid != len(l.buf) {
		t.Fatalf("valid = %d, want %d", valid, len(l.buf))
	}
	entriesEqual(t, got, l.want)
}

func TestRecordRoundTripFields(t *testing.T) {
	r := fullRecord()
	buf, err := encodeRecord(nil, 99, r)
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := decodeFrame(buf)
	if err != nil {
		t.Fatal(err)
	}
	if e.kind != kindRecord || e.intentID != 99 {
		t.Fatalf("kind %q intent %d", e.kind, e.intentID)
	}
	if !reflect.DeepEqual(e.rec, r) {
		t.Fatalf("record changed:\n got %s\nwant %s", e.rec, r)
	}
}

func TestFrameLayout(t *testing.T) {
	buf := appendFrame([]byte("prefix"), kindDone, u64(5))
	f := buf[len("prefix"):]
	if n := binary.LittleEndian.Uint32(f); n != 9 {
		t.Fatalf("length = %d, want 9", n)
	}
	if crc := binary.LittleEndian.Uint32(f[4:]); crc != crc32.Checksum(f[8:], crc32.MakeTable(crc32.Castagnoli)) {
		t.Fatalf("crc mismatch")
	}
	if f[8] != byte(kindDone) || binary.LittleEndian.Uint64(f[9:]) != 5 {
		t.Fatalf("bad body %x", f[8:])
	}
	if !bytes.HasPrefix(buf, []byte("prefix")) {
		t.Fatalf("prefix clobbered")
	}
}

func TestDecodeWALEmpty(t *testing.T) {
	for _, b := range [][]byte{nil, {}} {
		es, n := decodeWAL(b)
		if len(es) != 0 || n != 0 {
			t.Fatalf("decodeWAL(%v) = %d entries, %d", b, len(es), n)
		}
	}
}

// TestDecodeWALTornTail cuts the log at every byte offset: the entries of
// the whole frames before the cut come back, never a panic.
func TestDecodeWALTornTail(t *testing.T) {
	l := sampleLog(t)
	for cut := 0; cut <= len(l.buf); cut++ {
		whole := 0
		for whole < len(l.starts) {
			end := len(l.buf)
			if whole+1 < len(l.starts) {
				end = l.starts[whole+1]
			}
			if end > cut {
				break
			}
			whole++
		}
		wantValid := len(l.buf)
		if whole < len(l.starts) {
			wantValid = l.starts[whole]
		}
		// Capacity is capped at the cut, so any reslicing past the end
		// panics instead of reading the rest of the log.
		b := l.buf[:cut:cut]
		got, valid := decodeWAL(b)
		if valid != wantValid {
			t.Fatalf("cut %d: valid = %d, want %d", cut, valid, wantValid)
		}
		entriesEqual(t, got, l.want[:whole])
	}
}

// TestDecodeWALTornLastFrame is the brief's case: only the last frame is
// torn, at every one of its byte offsets.
func TestDecodeWALTornLastFrame(t *testing.T) {
	l := sampleLog(t)
	last := l.starts[len(l.starts)-1]
	for cut := last; cut < len(l.buf); cut++ {
		got, valid := decodeWAL(l.buf[:cut:cut])
		if valid != last {
			t.Fatalf("cut %d: valid = %d, want %d", cut, valid, last)
		}
		entriesEqual(t, got, l.want[:len(l.want)-1])
		// Garbage after the cut instead of nothing: still the prefix.
		g := append(bytes.Clone(l.buf[:cut]), bytes.Repeat([]byte{0xff}, 64)...)
		if _, valid := decodeWAL(g); valid != last {
			t.Fatalf("cut %d + garbage: valid = %d, want %d", cut, valid, last)
		}
	}
}

// TestDecodeWALBitFlip flips every bit of one frame: the CRC (or the
// length check) rejects it and the log ends before it.
func TestDecodeWALBitFlip(t *testing.T) {
	l := sampleLog(t)
	for fi := range l.starts {
		start := l.starts[fi]
		end := len(l.buf)
		if fi+1 < len(l.starts) {
			end = l.starts[fi+1]
		}
		for bit := 0; bit < (end-start)*8; bit++ {
			b := bytes.Clone(l.buf)
			b[start+bit/8] ^= 1 << (bit % 8)
			got, valid := decodeWAL(b)
			if valid != start {
				t.Fatalf("frame %d bit %d flipped: valid = %d, want %d", fi, bit, valid, start)
			}
			entriesEqual(t, got, l.want[:fi])
			if _, _, err := decodeFrame(b[start:]); !errors.Is(err, errTorn) {
				t.Fatalf("frame %d bit %d flipped: err = %v, want errTorn", fi, bit, err)
			}
		}
	}
}

// frameWithLength builds a frame header claiming length n with a CRC
// computed over body.
func frameWithLength(n uint32, body []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, n)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(body, castagnoli))
	return append(b, body...)
}

func TestDecodeFrameLengthBounds(t *testing.T) {
	// Zero length.
	if _, _, err := decodeFrame(frameWithLength(0, []byte{byte(kindDone), 0, 0, 0, 0, 0, 0, 0, 0})); !errors.Is(err, errTorn) {
		t.Fatalf("length 0: err = %v", err)
	}
	// A length past the end of the buffer.
	body := appendFrame(nil, kindDone, u64(1))[frameHeader:]
	if _, _, err := decodeFrame(frameWithLength(uint32(len(body)+1), body)); !errors.Is(err, errTorn) {
		t.Fatalf("length past end: err = %v", err)
	}
	// Huge lengths, including ones that would overflow int32 arithmetic.
	for _, n := range []uint32{maxFrame + 1, 1 << 31, 1<<32 - 1} {
		if _, _, err := decodeFrame(frameWithLength(n, body)); !errors.Is(err, errTorn) {
			t.Fatalf("length %d: err = %v", n, err)
		}
	}
}

// TestDecodeFrameMaxFrame checks the bound itself with buffers that really
// hold that many bytes and a correct CRC: maxFrame is accepted,
// maxFrame+1 is rejected.
func TestDecodeFrameMaxFrame(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 32 MiB")
	}
	mk := func(n int) []byte {
		// kind | u64 intent | {"op":"write","path":"xxx…"}
		head := []byte(`{"op":"write","path":"`)
		tail := []byte(`"}`)
		pad := n - 1 - 8 - len(head) - len(tail)
		body := make([]byte, 0, n)
		body = append(body, byte(kindRecord))
		body = binary.LittleEndian.AppendUint64(body, 0)
		body = append(body, head...)
		body = append(body, bytes.Repeat([]byte{'x'}, pad)...)
		body = append(body, tail...)
		return frameWithLength(uint32(len(body)), body)
	}
	b := mk(maxFrame)
	e, n, err := decodeFrame(b)
	if err != nil || n != len(b) {
		t.Fatalf("maxFrame: n=%d err=%v", n, err)
	}
	if e.rec == nil || len(e.rec.Path) != maxFrame-1-8-len(`{"op":"write","path":""}`) {
		t.Fatalf("maxFrame: bad record")
	}
	b = mk(maxFrame + 1)
	if _, _, err := decodeFrame(b); !errors.Is(err, errTorn) {
		t.Fatalf("maxFrame+1: err = %v, want errTorn", err)
	}
	if es, valid := decodeWAL(b); len(es) != 0 || valid != 0 {
		t.Fatalf("maxFrame+1: decodeWAL = %d entries, valid %d", len(es), valid)
	}
}

// TestDecodeFrameBadPayload: frames whose CRC is right but whose payload
// does not fit the kind end the log too.
func TestDecodeFrameBadPayload(t *testing.T) {
	cases := map[string][]byte{
		"unknown kind":      appendFrame(nil, 'X', u64(1)),
		"empty record":      appendFrame(nil, kindRecord),
		"short record":      appendFrame(nil, kindRecord, []byte{1, 2, 3}),
		"record no json":    appendFrame(nil, kindRecord, u64(0)),
		"record bad json":   appendFrame(nil, kindRecord, u64(0), []byte(`{"seq":`)),
		"record wrong type": appendFrame(nil, kindRecord, u64(0), []byte(`{"seq":"one"}`)),
		"intent bad json":   appendFrame(nil, kindIntent, []byte(`[`)),
		"intent empty":      appendFrame(nil, kindIntent),
		"done short":        appendFrame(nil, kindDone, []byte{1, 2, 3}),
		"done long":         appendFrame(nil, kindDone, u64(1), []byte{0}),
		"close short":       appendFrame(nil, kindClose, u64(1)),
		"close long":        appendFrame(nil, kindClose, u64(1), u64(2), []byte{0}),
		"kind only":         appendFrame(nil, kindClose),
	}
	good := appendFrame(nil, kindDone, u64(7))
	for name, frame := range cases {
		if _, _, err := decodeFrame(frame); !errors.Is(err, errTorn) {
			t.Errorf("%s: err = %v, want errTorn", name, err)
		}
		// The log ends at the bad frame even when good frames follow.
		log := append(append(bytes.Clone(good), frame...), good...)
		es, valid := decodeWAL(log)
		if len(es) != 1 || valid != len(good) {
			t.Errorf("%s: decodeWAL = %d entries, valid %d; want 1, %d", name, len(es), valid, len(good))
		}
	}
}
