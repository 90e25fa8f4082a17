package sync

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/journal"
)

// decodeAny decodes a frame the way the receiver would, by its type.
func decodeAny(f Frame) error {
	switch f.Type {
	case THello:
		return DecodeJSON(f, new(Hello))
	case TWelcome:
		return DecodeJSON(f, new(Welcome))
	case TBatch:
		return DecodeJSON(f, new(BatchBegin))
	case TRecord:
		var r journal.Record
		if err := DecodeJSON(f, &r); err != nil {
			return err
		}
		return checkRecord(&r)
	case TFile:
		return DecodeJSON(f, new(FileHeader))
	case TData:
		_, _, err := DecodeData(f)
		return err
	case THole, TKeep:
		_, _, err := DecodeRange(f)
		return err
	case TFileEnd:
		return DecodeJSON(f, new(FileEnd))
	case TBatchEnd:
		return DecodeJSON(f, new(BatchEnd))
	case TAck:
		return DecodeJSON(f, new(Ack))
	case TPing:
		return DecodeJSON(f, new(Ping))
	case TTree:
		return DecodeJSON(f, new(TreeBegin))
	case TDir:
		return DecodeJSON(f, new(Dir))
	case TWants:
		return DecodeJSON(f, new(Wants))
	case TDirEnd:
		return DecodeJSON(f, new(DirEnd))
	case TTreeEnd:
		return DecodeJSON(f, new(TreeEnd))
	case TError:
		return DecodeJSON(f, new(ErrorMsg))
	case TManifest:
		return DecodeJSON(f, new(Manifest))
	case TControl:
		var v map[string]any
		return DecodeJSON(f, &v) // typed by package failover, which fuzzes its own
	}
	return nil
}

// FuzzDecodeFrames feeds arbitrary bytes to the frame reader and every
// typed decoder: errors are fine, panics and unbounded allocations are not.
func FuzzDecodeFrames(f *testing.F) {
	for _, s := range seedStreams() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var buf []byte
		for {
			fr, b, err := ReadFrame(r, buf)
			buf = b
			if err != nil {
				return
			}
			if len(fr.Payload) >= MaxFrame {
				t.Fatalf("frame of %d bytes accepted", len(fr.Payload))
			}
			decodeAny(fr)
		}
	})
}

// FuzzApplyBatch applies arbitrary bytes as a staged batch to a backing
// dir beside a victim dir: whatever the bytes, nothing outside the
// backing dir changes and nothing panics.
func FuzzApplyBatch(f *testing.F) {
	for _, s := range seedStreams() {
		f.Add(s)
	}
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		backing, state, outside := filepath.Join(base, "backing"), filepath.Join(base, "state"), filepath.Join(base, "outside")
		for _, d := range []string{backing, state, outside} {
			os.Mkdir(d, 0o755)
		}
		os.WriteFile(filepath.Join(outside, "victim"), []byte("keep"), 0o644)
		os.Symlink(outside, filepath.Join(backing, "link"))
		fd, err := unix.Open(backing, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		r, err := NewReceiver(fd, db, state, nopSink{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		r.noSync = true
		if err := os.WriteFile(r.stagePath(), data, 0o600); err != nil {
			t.Fatal(err)
		}
		r.applyStaged(context.Background())
		if b, _ := os.ReadFile(filepath.Join(outside, "victim")); string(b) != "keep" {
			t.Fatalf("victim outside the backing dir changed: %q", b)
		}
		ents, _ := os.ReadDir(outside)
		if len(ents) != 1 {
			t.Fatalf("entries appeared outside the backing dir: %v", ents)
		}
		ents, _ = os.ReadDir(base)
		if len(ents) != 3 {
			t.Fatalf("entries appeared beside the backing dir: %v", ents)
		}
	})
}

// seedStreams are well-formed and hostile frame streams.
func seedStreams() [][]byte {
	mode := uint32(0o100644)
	js := jsonFrame
	batch := func(frames ...[]byte) []byte {
		out := js(TBatch, &BatchBegin{First: 1, Last: 3})
		for _, f := range frames {
			out = append(out, f...)
		}
		return append(out, js(TBatchEnd, &BatchEnd{Seq: 3, Fixups: []Fixup{{Path: "d", Mtime: 1}}})...)
	}
	data := AppendFrame(nil, TData, []byte{0, 0, 0, 0, 0, 0, 0, 0}, []byte("hello"))
	hole := AppendFrame(nil, THole, []byte{0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 8})
	return [][]byte{
		js(TPing, &Ping{Seq: 7}),
		batch(js(TRecord, &journal.Record{Seq: 1, Op: journal.OpMkdir, Path: "d", Mode: &mode}),
			js(TRecord, &journal.Record{Seq: 2, Op: journal.OpCreate, Path: "d/f", Mode: &mode}),
			js(TRecord, &journal.Record{Seq: 3, Op: journal.OpWrite, Path: "d/f", Ranges: []journal.Range{{0, 5}}}),
			js(TFile, &FileHeader{Path: "d/f"}), data, hole, js(TFileEnd, &FileEnd{Size: 16, Mtime: 5})),
		batch(js(TRecord, &journal.Record{Seq: 1, Op: journal.OpCreate, Path: "link/x", Mode: &mode}),
			js(TRecord, &journal.Record{Seq: 2, Op: journal.OpRename, Path: "link", NewPath: "l2", Flags: renameExchange})),
		batch(js(TRecord, &journal.Record{Seq: 1, Op: journal.OpCreate, Path: "../x", Mode: &mode})),
		batch(js(TFile, &FileHeader{Path: "link"}), data, js(TFileEnd, &FileEnd{Size: 5})),
		js(THello, &Hello{Proto: Proto, Purpose: PurposeReplicate, Node: "p", Volume: "v", Claim: &Claim{Role: RolePrimary, Epoch: 2, Primary: strings.Repeat("ab", 32), History: []EpochStart{{Epoch: 1, Primary: strings.Repeat("cd", 32)}, {Epoch: 2, Start: 9, Primary: strings.Repeat("ab", 32)}}}}),
		js(TWelcome, &Welcome{Proto: Proto, Claim: &Claim{Role: RoleSecondary, Epoch: 3, Seq: 12}, Cursor: 12, Repair: []string{"a/b"}, Unsettled: true}),
		js(TRecord, &journal.Record{Seq: 4, Op: journal.OpResync, Path: ""}),
		js(TDir, &Dir{Path: "", Self: &Entry{Mode: 0o40755}, Entries: []Entry{{Name: "a", Mode: 0o100644, Size: 3}}, Full: true}),
		{0, 0, 0, 1, 99},
		{0xff, 0xff, 0xff, 0xff, 1},
	}
}

// jsonFrame encodes v as a frame of type t.
func jsonFrame(t FrameType, v any) []byte {
	js, err := encodeJSON(t, v)
	if err != nil {
		panic(err)
	}
	return AppendFrame(nil, t, js)
}
