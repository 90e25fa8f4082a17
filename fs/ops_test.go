package fs

import (
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/journal"
)

// want is the part of a record an operation test checks.
type want struct {
	op      journal.Op
	path    string
	newPath string
	ranges  []journal.Range
}

func checkRecords(t *testing.T, got []journal.Record, wants ...want) {
	t.Helper()
	if len(got) != len(wants) {
		for _, r := range got {
			t.Logf("got %s", r.String())
		}
		t.Fatalf("got %d records, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		r := got[i]
		if r.Op != w.op || r.Path != w.path || r.NewPath != w.newPath {
			t.Errorf("record %d: got %s %q -> %q, want %s %q -> %q", i, r.Op, r.Path, r.NewPath, w.op, w.path, w.newPath)
		}
		if w.ranges != nil && !equalRanges(r.Ranges, w.ranges) {
			t.Errorf("record %d (%s): ranges %v, want %v", i, r.Op, r.Ranges, w.ranges)
		}
		if r.Epoch != 1 || r.Time.IsZero() {
			t.Errorf("record %d: epoch %d time %v", i, r.Epoch, r.Time)
		}
		if i > 0 && r.Seq != got[i-1].Seq+1 {
			t.Errorf("record %d: seq %d after %d", i, r.Seq, got[i-1].Seq)
		}
	}
}

func equalRanges(a, b []journal.Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, p string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	must(t, err)
	_, err = f.WriteAt(data, off)
	must(t, err)
	must(t, f.Close())
}

// TestJournalEachOperation performs every operation of SPEC §4.1 through
// the mount and checks the journal record it leaves.
func TestJournalEachOperation(t *testing.T) {
	tm := newTestMount(t)
	p := tm.path
	// A fixture used by several cases.
	must(t, os.WriteFile(p("base"), []byte("0123456789"), 0o644))
	must(t, os.Mkdir(p("dir"), 0o755))
	must(t, os.WriteFile(p("dir/inner"), []byte("x"), 0o644))

	cases := []struct {
		name string
		do   func(t *testing.T)
		want []want
	}{
		{"create", func(t *testing.T) {
			f, err := os.OpenFile(p("c"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
			must(t, err)
			must(t, f.Close())
		}, []want{{op: journal.OpCreate, path: "c"}}},
		{"mkdir", func(t *testing.T) { must(t, os.Mkdir(p("d"), 0o750)) },
			[]want{{op: journal.OpMkdir, path: "d"}}},
		{"mknod fifo", func(t *testing.T) { must(t, unix.Mkfifo(p("fifo"), 0o600)) },
			[]want{{op: journal.OpMknod, path: "fifo"}}},
		{"mknod char device", func(t *testing.T) { must(t, unix.Mknod(p("null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3)))) },
			[]want{{op: journal.OpMknod, path: "null"}}},
		{"symlink", func(t *testing.T) { must(t, os.Symlink("base", p("sl"))) },
			[]want{{op: journal.OpSymlink, path: "sl"}}},
		{"link", func(t *testing.T) { must(t, os.Link(p("base"), p("hl"))) },
			[]want{{op: journal.OpLink, path: "base", newPath: "hl"}}},
		{"unlink", func(t *testing.T) { must(t, os.Remove(p("hl"))) },
			[]want{{op: journal.OpUnlink, path: "hl"}}},
		{"rmdir", func(t *testing.T) { must(t, os.Remove(p("d"))) },
			[]want{{op: journal.OpRmdir, path: "d"}}},
		{"rename", func(t *testing.T) { must(t, os.Rename(p("c"), p("dir/c2"))) },
			[]want{{op: journal.OpRename, path: "c", newPath: "dir/c2"}}},
		{"rename directory", func(t *testing.T) { must(t, os.Rename(p("dir"), p("dir2"))) },
			[]want{{op: journal.OpRename, path: "dir", newPath: "dir2"}}},
		{"rename noreplace", func(t *testing.T) {
			if err := unix.Renameat2(unix.AT_FDCWD, p("sl"), unix.AT_FDCWD, p("base"), unix.RENAME_NOREPLACE); err != unix.EEXIST {
				t.Fatalf("RENAME_NOREPLACE onto an existing name: %v, want EEXIST", err)
			}
			must(t, unix.Renameat2(unix.AT_FDCWD, p("sl"), unix.AT_FDCWD, p("sl2"), unix.RENAME_NOREPLACE))
		}, []want{{op: journal.OpRename, path: "sl", newPath: "sl2"}}},
		{"rename exchange", func(t *testing.T) {
			must(t, unix.Renameat2(unix.AT_FDCWD, p("sl2"), unix.AT_FDCWD, p("dir2"), unix.RENAME_EXCHANGE))
		}, []want{{op: journal.OpRename, path: "sl2", newPath: "dir2"}}},
		{"chmod", func(t *testing.T) { must(t, os.Chmod(p("base"), 0o600)) },
			[]want{{op: journal.OpSetattr, path: "base"}}},
		{"chown", func(t *testing.T) { must(t, os.Lchown(p("base"), 65534, 65534)) },
			[]want{{op: journal.OpSetattr, path: "base"}}},
		{"utimes", func(t *testing.T) {
			ts := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
			must(t, os.Chtimes(p("base"), ts, ts))
		}, []want{{op: journal.OpSetattr, path: "base"}}},
		{"truncate", func(t *testing.T) { must(t, os.Truncate(p("base"), 4)) },
			[]want{{op: journal.OpTruncate, path: "base"}}},
		{"open O_TRUNC", func(t *testing.T) {
			f, err := os.OpenFile(p("base"), os.O_WRONLY|os.O_TRUNC, 0)
			must(t, err)
			must(t, f.Close())
		}, []want{{op: journal.OpTruncate, path: "base"}}},
		{"write once", func(t *testing.T) { writeAt(t, p("base"), 100, []byte("hello")) },
			[]want{{op: journal.OpWrite, path: "base", ranges: []journal.Range{{100, 5}}}}},
		{"large write", func(t *testing.T) {
			// The kernel sends it as 1 MiB requests (MaxWrite): one
			// session, its ranges coalesced.
			writeAt(t, p("big"), 0, make([]byte, 4<<20))
		}, []want{
			{op: journal.OpCreate, path: "big"},
			{op: journal.OpWrite, path: "big", ranges: []journal.Range{{0, 1 << 20}}},
			{op: journal.OpWrite, path: "big", ranges: []journal.Range{{1 << 20, 3 << 20}}},
		}},
		{"write coalesced", func(t *testing.T) {
			f, err := os.OpenFile(p("base"), os.O_WRONLY, 0)
			must(t, err)
			for i := 0; i < 1000; i++ {
				_, err := f.WriteAt([]byte("abcd"), int64(4096+4*(i%500)))
				must(t, err)
			}
			_, err = f.WriteAt([]byte("z"), 10000)
			must(t, err)
			must(t, f.Close())
		}, []want{
			{op: journal.OpWrite, path: "base", ranges: []journal.Range{{4096, 4}}},
			{op: journal.OpWrite, path: "base", ranges: []journal.Range{{4096, 2000}, {10000, 1}}},
		}},
		{"fallocate", func(t *testing.T) {
			f, err := os.OpenFile(p("base"), os.O_WRONLY, 0)
			must(t, err)
			must(t, unix.Fallocate(int(f.Fd()), 0, 0, 1<<16))
			must(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096))
			must(t, f.Close())
		}, []want{
			{op: journal.OpFallocate, path: "base", ranges: []journal.Range{{0, 1 << 16}}},
			{op: journal.OpFallocate, path: "base", ranges: []journal.Range{{0, 4096}}},
		}},
		{"setxattr", func(t *testing.T) { must(t, unix.Setxattr(p("base"), "user.k", []byte("v"), 0)) },
			[]want{{op: journal.OpSetxattr, path: "base"}}},
		{"removexattr", func(t *testing.T) { must(t, unix.Removexattr(p("base"), "user.k")) },
			[]want{{op: journal.OpRemovexattr, path: "base"}}},
		{"copy_file_range", func(t *testing.T) {
			src, err := os.Open(p("base"))
			must(t, err)
			defer src.Close()
			dst, err := os.OpenFile(p("copy"), os.O_CREATE|os.O_WRONLY, 0o644)
			must(t, err)
			offIn, offOut := int64(0), int64(0)
			n, err := unix.CopyFileRange(int(src.Fd()), &offIn, int(dst.Fd()), &offOut, 8192, 0)
			must(t, err)
			if n == 0 {
				t.Fatal("copy_file_range copied nothing")
			}
			must(t, dst.Close())
		}, []want{{op: journal.OpCreate, path: "copy"}, {op: journal.OpWrite, path: "copy", ranges: []journal.Range{{0, 8192}}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			since := tm.n.Journal.Seq()
			c.do(t)
			checkRecords(t, tm.records(t, since), c.want...)
		})
	}
}

// TestJournalRecordFields checks that records carry what a replay needs.
func TestJournalRecordFields(t *testing.T) {
	tm := newTestMount(t)
	since := tm.n.Journal.Seq()
	must(t, unix.Mkdir(tm.path("d"), 0o1750))
	must(t, os.Symlink("target/x", tm.path("s")))
	must(t, unix.Setxattr(tm.path("d"), "user.k", []byte("value"), 0))
	ts := time.Date(2021, 5, 6, 7, 8, 9, 10, time.UTC)
	must(t, os.Chtimes(tm.path("d"), ts, ts))
	recs := tm.records(t, since)
	if len(recs) != 4 {
		t.Fatalf("got %d records", len(recs))
	}
	if m := recs[0].Mode; m == nil || *m != syscall.S_IFDIR|syscall.S_ISVTX|0o750 || *recs[0].UID != 0 {
		t.Errorf("mkdir record mode/uid: %v", recs[0].String())
	}
	if recs[1].Target != "target/x" {
		t.Errorf("symlink target %q", recs[1].Target)
	}
	if recs[2].Xattr != "user.k" || string(recs[2].Value) != "value" {
		t.Errorf("setxattr record %s", recs[2].String())
	}
	if recs[3].Mtime == nil || !recs[3].Mtime.Equal(ts) {
		t.Errorf("utimes record %s", recs[3].String())
	}
}

// TestHiddenDir checks that georep's own dir is invisible and untouchable
// through the mount.
func TestHiddenDir(t *testing.T) {
	tm := newTestMount(t)
	if _, err := os.Stat(tm.backing + "/" + HiddenDir); err != nil {
		t.Fatalf("backing dir has no %s: %v", HiddenDir, err)
	}
	if _, err := os.Lstat(tm.path(HiddenDir)); !os.IsNotExist(err) {
		t.Errorf("stat through the mount: %v, want ENOENT", err)
	}
	ents, err := os.ReadDir(tm.mnt)
	must(t, err)
	for _, e := range ents {
		if e.Name() == HiddenDir {
			t.Errorf("readdir lists %s", HiddenDir)
		}
	}
	if err := os.Mkdir(tm.path(HiddenDir), 0o755); err == nil {
		t.Errorf("mkdir %s through the mount succeeded", HiddenDir)
	}
	must(t, os.WriteFile(tm.path("f"), nil, 0o644))
	if err := os.Rename(tm.path("f"), tm.path(HiddenDir)); err == nil {
		t.Errorf("rename onto %s succeeded", HiddenDir)
	}
}

// TestIoctlRefused checks that content-changing ioctls do not bypass the
// journal.
func TestIoctlRefused(t *testing.T) {
	tm := newTestMount(t)
	must(t, os.WriteFile(tm.path("a"), []byte("data"), 0o644))
	must(t, os.WriteFile(tm.path("b"), nil, 0o644))
	a, err := os.Open(tm.path("a"))
	must(t, err)
	defer a.Close()
	b, err := os.OpenFile(tm.path("b"), os.O_WRONLY, 0)
	must(t, err)
	defer b.Close()
	if err := unix.IoctlFileClone(int(b.Fd()), int(a.Fd())); err == nil {
		t.Fatal("FICLONE through the mount succeeded behind the journal's back")
	}
	if _, err := unix.IoctlGetInt(int(a.Fd()), unix.FS_IOC_GETFLAGS); err != nil && err != unix.ENOTTY && err != unix.ENOTSUP {
		t.Logf("FS_IOC_GETFLAGS: %v", err)
	}
}

// TestUnlinkedOpenFile changes a file through its descriptor after its
// last name is gone, as temporary files are used: every call works as on
// the native filesystem, and nothing is journaled after the unlink (no
// name reaches the file, there is nothing to replicate).
func TestUnlinkedOpenFile(t *testing.T) {
	tm := newTestMount(t)
	f, err := os.OpenFile(tm.path("tmp"), os.O_CREATE|os.O_RDWR, 0o644)
	must(t, err)
	defer f.Close()
	must(t, os.Remove(tm.path("tmp")))
	since := tm.n.Journal.Seq()
	_, err = f.WriteAt([]byte("scratch data"), 0)
	must(t, err)
	must(t, f.Truncate(4))
	must(t, f.Chmod(0o600))
	must(t, unix.Fsetxattr(int(f.Fd()), "user.k", []byte("v"), 0))
	must(t, unix.Fallocate(int(f.Fd()), 0, 0, 8192))
	buf := make([]byte, 4)
	_, err = f.ReadAt(buf, 0)
	must(t, err)
	if string(buf) != "scra" {
		t.Errorf("read back %q", buf)
	}
	if recs := tm.records(t, since); len(recs) != 0 {
		for _, r := range recs {
			t.Logf("%s", r.String())
		}
		t.Errorf("%d records for a file no name reaches", len(recs))
	}
}
