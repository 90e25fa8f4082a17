package sync

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/journal"
)

func TestCopyEntry(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "backing")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "d/e")} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(filepath.Join(root, "d/e/f"), []byte("contents"), 0o640))
	must(t, unix.Setxattr(filepath.Join(root, "d/e/f"), "user.k", []byte("v"), 0))
	mtime := time.Unix(1_600_000_000, 123)
	must(t, os.Chtimes(filepath.Join(root, "d/e/f"), mtime, mtime))
	must(t, os.Symlink("../target", filepath.Join(root, "d/link")))
	must(t, unix.Mkfifo(filepath.Join(root, "d/fifo"), 0o600))
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd)
	log := slog.New(slog.DiscardHandler)
	copyOK := func(from, to string, recursive bool) {
		t.Helper()
		ok, err := CopyEntry(fd, from, to, recursive, log)
		if err != nil || !ok {
			t.Fatalf("CopyEntry(%q, %q): %v %v", from, to, ok, err)
		}
	}
	copyOK("d/e/f", ".georep/conflicts/1/d/e/f", false)
	got := filepath.Join(root, ".georep/conflicts/1/d/e/f")
	if b, _ := os.ReadFile(got); string(b) != "contents" {
		t.Errorf("copy holds %q", b)
	}
	var st unix.Stat_t
	must(t, unix.Lstat(got, &st))
	if st.Mode&0o777 != 0o640 || st.Mtim.Nano() != mtime.UnixNano() {
		t.Errorf("copy has mode %o mtime %d", st.Mode&0o777, st.Mtim.Nano())
	}
	if v := make([]byte, 8); func() bool { n, err := unix.Getxattr(got, "user.k", v); return err != nil || string(v[:n]) != "v" }() {
		t.Error("copy lost its xattr")
	}
	// Again: it replaces the earlier copy.
	must(t, os.WriteFile(filepath.Join(root, "d/e/f"), []byte("newer"), 0o640))
	copyOK("d/e/f", ".georep/conflicts/1/d/e/f", false)
	if b, _ := os.ReadFile(got); string(b) != "newer" {
		t.Errorf("second copy holds %q", b)
	}
	copyOK("d/link", ".georep/conflicts/1/d/link", false)
	if target, _ := os.Readlink(filepath.Join(root, ".georep/conflicts/1/d/link")); target != "../target" {
		t.Errorf("symlink copied as %q", target)
	}
	copyOK("d/fifo", ".georep/conflicts/1/d/fifo", false)
	// A directory alone is copied empty; the volume whole, recursively,
	// without georep's own dir.
	copyOK("d", ".georep/conflicts/2/d", false)
	if ents, _ := os.ReadDir(filepath.Join(root, ".georep/conflicts/2/d")); len(ents) != 0 {
		t.Errorf("a directory copied alone holds %v", ents)
	}
	copyOK("", ".georep/conflicts/3", true)
	if b, _ := os.ReadFile(filepath.Join(root, ".georep/conflicts/3/d/e/f")); string(b) != "newer" {
		t.Errorf("recursive copy holds %q", b)
	}
	if _, err := os.Lstat(filepath.Join(root, ".georep/conflicts/3/.georep")); err == nil {
		t.Error("the recursive copy of the volume copied georep's own dir")
	}
	// What is not there is not copied.
	if ok, err := CopyEntry(fd, "missing/x", ".georep/conflicts/1/missing/x", false, log); ok || err != nil {
		t.Errorf("missing entry: %v %v", ok, err)
	}
	// Hostile: a symlink planted where the copies go, or in the path of
	// the source, leads nowhere outside.
	must(t, os.Symlink(outside, filepath.Join(root, ".georep/conflicts/9")))
	if _, err := CopyEntry(fd, "d/e/f", ".georep/conflicts/9/f", false, log); err == nil {
		t.Error("copied through a planted symlink")
	}
	must(t, os.Symlink(outside, filepath.Join(root, "esc")))
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600))
	if ok, _ := CopyEntry(fd, "esc/secret", ".georep/conflicts/1/secret", false, log); ok {
		t.Error("copied a file from outside the backing dir through a symlink")
	}
	if _, err := CopyEntry(fd, "../outside/secret", ".georep/conflicts/1/x", false, log); err == nil {
		t.Error("copied from a .. path")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Errorf("entries appeared outside the backing dir: %v", ents)
	}
}

// TestReceiverRepairFollowsRenames applies a staged batch holding a
// resync record and a rename of its directory: the path to compare is
// where the contents went, and a record that does not fit joins it.
func TestReceiverRepairFollowsRenames(t *testing.T) {
	base := t.TempDir()
	backing, state := filepath.Join(base, "backing"), filepath.Join(base, "state")
	must(t, os.MkdirAll(filepath.Join(backing, "a"), 0o755))
	must(t, os.Mkdir(state, 0o700))
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	must(t, err)
	defer db.Close()
	fd, err := unix.Open(backing, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd)
	r, err := NewReceiver(fd, db, state, nopSink{}, slog.New(slog.DiscardHandler))
	must(t, err)
	r.noSync = true
	var stage []byte
	stage = append(stage, jsonFrame(TBatch, &BatchBegin{First: 1, Last: 3})...)
	stage = append(stage, jsonFrame(TRecord, &journal.Record{Seq: 1, Epoch: 4, Op: journal.OpResync, Path: "a/x"})...)
	stage = append(stage, jsonFrame(TRecord, &journal.Record{Seq: 2, Epoch: 4, Op: journal.OpRename, Path: "a", NewPath: "b"})...)
	stage = append(stage, jsonFrame(TRecord, &journal.Record{Seq: 3, Epoch: 4, Op: journal.OpRmdir, Path: "gone/deep"})...)
	stage = append(stage, jsonFrame(TBatchEnd, &BatchEnd{Seq: 3})...)
	must(t, os.WriteFile(r.stagePath(), stage, 0o600))
	ack, err := r.applyStaged(context.Background())
	must(t, err)
	if want := []string{"b/x", "gone/deep"}; ack.Seq != 3 || !slices.Equal(ack.Repair, want) {
		t.Errorf("ack %+v, want seq 3 and repair %v", ack, want)
	}
	st, _ := r.State()
	if st.Cursor != 3 || !slices.Equal(st.Repair, ack.Repair) {
		t.Errorf("state %+v", st)
	}
	var got []string
	r.ReceivedSince(context.Background(), 0, func(rec *journal.Record) bool { got = append(got, string(rec.Op)); return true })
	if !slices.Equal(got, []string{"resync", "rename", "rmdir"}) {
		t.Errorf("received log %v", got)
	}
	if _, err := os.Stat(filepath.Join(backing, "b")); err != nil {
		t.Errorf("rename not applied: %v", err)
	}
}
