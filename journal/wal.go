package journal

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
)

// The write-ahead log is the journal's durability rule against SIGKILL:
// an entry is copied into the kernel's page cache (logfile.go) before the
// mutation it describes is acknowledged, so it survives the death of the
// daemon (it reaches the disk itself at the next periodic or fsync-driven
// fdatasync). Entries are drained into badger in the background; the log
// is replayed at start-up and rotated once badger holds everything.
//
// Frame: u32 length of (kind+payload) | u32 CRC-32C of (kind+payload) |
// u8 kind | payload. A frame that is short or fails its CRC ends the log:
// it is a torn tail written when the machine lost power.

type walKind byte

const (
	kindRecord walKind = 'R' // u64 intent id (0: none) | JSON Record
	kindIntent walKind = 'I' // JSON walIntent: a metadata op about to run
	kindDone   walKind = 'D' // u64 intent id: the op failed, nothing changed
	kindClose  walKind = 'C' // u64 ino | u64 seq of the session's open record
)

const (
	frameHeader = 8
	// maxFrame bounds one entry; a larger length is corruption.
	maxFrame = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type walIntent struct {
	ID    uint64   `json:"id"`
	Op    Op       `json:"op"`
	Paths []string `json:"paths"`
}

// walEntry is one decoded frame.
type walEntry struct {
	kind     walKind
	intentID uint64
	rec      *Record
	intent   *walIntent
	ino      uint64
	openSeq  uint64
}

// appendFrame appends one frame of kind with payload to buf.
func appendFrame(buf []byte, kind walKind, payload ...[]byte) []byte {
	n := 1
	for _, p := range payload {
		n += len(p)
	}
	start := len(buf)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(n))
	buf = binary.LittleEndian.AppendUint32(buf, 0)
	buf = append(buf, byte(kind))
	for _, p := range payload {
		buf = append(buf, p...)
	}
	crc := crc32.Checksum(buf[start+frameHeader:], castagnoli)
	binary.LittleEndian.PutUint32(buf[start+4:], crc)
	return buf
}

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func encodeRecord(buf []byte, intentID uint64, r *Record) ([]byte, error) {
	js, err := json.Marshal(r)
	if err != nil {
		return buf, fmt.Errorf("encode record %s %q: %w", r.Op, r.Path, err)
	}
	return appendFrame(buf, kindRecord, u64(intentID), js), nil
}

// errTorn marks the end of the usable log.
var errTorn = errors.New("torn or corrupt wal frame")

// decodeFrame decodes the frame at the start of b. It returns the entry and
// the frame's size, or errTorn (wrapped) when b does not start with a whole,
// valid frame.
func decodeFrame(b []byte) (walEntry, int, error) {
	var e walEntry
	if len(b) < frameHeader+1 {
		return e, 0, fmt.Errorf("%w: %d bytes left", errTorn, len(b))
	}
	n := binary.LittleEndian.Uint32(b)
	if n < 1 || n > maxFrame || int(n) > len(b)-frameHeader {
		return e, 0, fmt.Errorf("%w: bad length %d", errTorn, n)
	}
	body := b[frameHeader : frameHeader+int(n)]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return e, 0, fmt.Errorf("%w: checksum mismatch", errTorn)
	}
	e.kind = walKind(body[0])
	p := body[1:]
	size := frameHeader + int(n)
	switch e.kind {
	case kindRecord:
		if len(p) < 8 {
			return e, 0, fmt.Errorf("%w: short record", errTorn)
		}
		e.intentID = binary.LittleEndian.Uint64(p)
		e.rec = new(Record)
		if err := json.Unmarshal(p[8:], e.rec); err != nil {
			return e, 0, fmt.Errorf("%w: record: %v", errTorn, err)
		}
	case kindIntent:
		e.intent = new(walIntent)
		if err := json.Unmarshal(p, e.intent); err != nil {
			return e, 0, fmt.Errorf("%w: intent: %v", errTorn, err)
		}
	case kindDone:
		if len(p) != 8 {
			return e, 0, fmt.Errorf("%w: bad done entry", errTorn)
		}
		e.intentID = binary.LittleEndian.Uint64(p)
	case kindClose:
		if len(p) != 16 {
			return e, 0, fmt.Errorf("%w: bad close entry", errTorn)
		}
		e.ino = binary.LittleEndian.Uint64(p)
		e.openSeq = binary.LittleEndian.Uint64(p[8:])
	default:
		return e, 0, fmt.Errorf("%w: unknown kind %q", errTorn, body[0])
	}
	return e, size, nil
}

// decodeWAL decodes every valid frame of b. It returns the entries and the
// length of the valid prefix; the rest is a torn tail.
func decodeWAL(b []byte) ([]walEntry, int) {
	var out []walEntry
	off := 0
	for off < len(b) {
		e, n, err := decodeFrame(b[off:])
		if err != nil {
			break
		}
		out = append(out, e)
		off += n
	}
	return out, off
}
