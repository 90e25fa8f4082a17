package sync

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/journal"
)

// TestApplierRefusesHostileRecords feeds the applier records a hostile or
// broken peer could send: paths with "..", absolute paths, NUL bytes, and
// symbolic links planted to lead outside the backing dir, then operated
// through or on. Nothing outside the backing dir may change.
func TestApplierRefusesHostileRecords(t *testing.T) {
	dir := t.TempDir()
	root, outside := filepath.Join(dir, "root"), filepath.Join(dir, "outside")
	for _, d := range []string{root, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("do not touch"), 0o600); err != nil {
		t.Fatal(err)
	}
	var before unix.Stat_t
	if err := unix.Stat(secret, &before); err != nil {
		t.Fatal(err)
	}
	rfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	ap := NewApplier(rfd)

	u32 := func(v uint32) *uint32 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	now := time.Now()
	// Plant links a peer could have created with earlier, valid records.
	for _, r := range []journal.Record{
		{Op: journal.OpSymlink, Path: "out", Target: outside},
		{Op: journal.OpSymlink, Path: "sec", Target: secret},
		{Op: journal.OpSymlink, Path: "up", Target: "../outside/secret"},
		{Op: journal.OpMknod, Path: "fifo", Mode: u32(unix.S_IFIFO | 0o600)},
	} {
		if err := ap.Apply(&r); err != nil {
			t.Fatalf("planting %s: %v", r.Path, err)
		}
	}
	hostile := []journal.Record{
		{Op: journal.OpCreate, Path: "../outside/new", Mode: u32(unix.S_IFREG | 0o644)},
		{Op: journal.OpCreate, Path: "/tmp/abs", Mode: u32(unix.S_IFREG | 0o644)},
		{Op: journal.OpCreate, Path: "a\x00b", Mode: u32(unix.S_IFREG | 0o644)},
		{Op: journal.OpCreate, Path: "out/new", Mode: u32(unix.S_IFREG | 0o644)},
		{Op: journal.OpCreate, Path: "sec", Mode: u32(unix.S_IFREG | 0o644)},
		{Op: journal.OpCreate, Path: "fifo", Mode: u32(unix.S_IFREG | 0o644)},
		{Op: journal.OpMkdir, Path: "out/d", Mode: u32(unix.S_IFDIR | 0o755)},
		{Op: journal.OpMkdir, Path: "sec", Mode: u32(unix.S_IFDIR | 0o777)},
		{Op: journal.OpMknod, Path: "out/n", Mode: u32(unix.S_IFIFO | 0o600)},
		{Op: journal.OpSymlink, Path: "out/l", Target: "/"},
		{Op: journal.OpLink, Path: "sec", NewPath: "out/hard"},
		{Op: journal.OpLink, Path: "../outside/secret", NewPath: "stolen"},
		{Op: journal.OpUnlink, Path: "out/secret"},
		{Op: journal.OpUnlink, Path: "../outside/secret"},
		{Op: journal.OpRmdir, Path: "out/.."},
		{Op: journal.OpRename, Path: "out/secret", NewPath: "mine"},
		{Op: journal.OpRename, Path: "fifo", NewPath: "out/moved"},
		{Op: journal.OpRename, Path: "fifo", NewPath: "../outside/moved"},
		{Op: journal.OpSetattr, Path: "sec", Mode: u32(0o777)},
		{Op: journal.OpSetattr, Path: "out/secret", Mode: u32(0o777), UID: u32(65534), GID: u32(65534)},
		{Op: journal.OpSetattr, Path: "up", Atime: &now, Mtime: &now},
		{Op: journal.OpTruncate, Path: "sec", Size: u64(0)},
		{Op: journal.OpTruncate, Path: "out/secret", Size: u64(0)},
		{Op: journal.OpFallocate, Path: "sec", Ranges: []journal.Range{{0, 4096}}, Flags: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE},
		{Op: journal.OpSetxattr, Path: "sec", Xattr: "user.x", Value: []byte("v")},
		{Op: journal.OpSetxattr, Path: "out/secret", Xattr: "user.x", Value: []byte("v")},
		{Op: journal.OpRemovexattr, Path: "up", Xattr: "user.x"},
	}
	for i := range hostile {
		_ = ap.Apply(&hostile[i]) // refusals are expected; the check is below
	}
	for _, w := range []struct {
		p    string
		data []byte
	}{{"sec", []byte("pwned")}, {"out/secret", []byte("pwned")}, {"up", []byte("pwned")}, {"../outside/secret", []byte("pwned")}, {"fifo", []byte("x")}} {
		if err := ap.WriteAt(w.p, 0, w.data); err == nil {
			t.Errorf("WriteAt(%q) succeeded", w.p)
		}
	}

	// Nothing outside changed.
	var after unix.Stat_t
	if err := unix.Stat(secret, &after); err != nil {
		t.Fatalf("the outside file is gone: %v", err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "do not touch" {
		t.Errorf("outside file content changed: %q", b)
	}
	if after.Mode != before.Mode || after.Uid != before.Uid || after.Nlink != before.Nlink || after.Mtim != before.Mtim {
		t.Errorf("outside file metadata changed: %+v -> %+v", before, after)
	}
	if sz, _ := unix.Getxattr(secret, "user.x", make([]byte, 16)); sz > 0 {
		t.Error("outside file got an xattr")
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 1 {
		t.Errorf("entries appeared outside: %v", ents)
	}
	if _, err := os.Stat("/tmp/abs"); err == nil {
		t.Error("/tmp/abs was created")
	}
	if _, err := os.Lstat(filepath.Join(root, "stolen")); err == nil {
		t.Error("an outside file was hardlinked in")
	}
}
