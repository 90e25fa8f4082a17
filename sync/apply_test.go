package sync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	georepfs "github.com/georep/georep/fs"
	"github.com/georep/georep/journal"
	"github.com/georep/georep/node"
)

// treeState describes every entry below root (but georep's own dir).
func treeState(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == georepfs.HiddenDir {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d nlink=%d", st.Mode, st.Uid, st.Gid, st.Nlink)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size=%d sha256=%x", len(b), sha256.Sum256(b))
		case unix.S_IFLNK:
			dst, _ := os.Readlink(p)
			desc += " -> " + dst
		case unix.S_IFCHR, unix.S_IFBLK:
			desc += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			buf := make([]byte, 4096)
			n, _ := unix.Llistxattr(p, buf)
			names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
			sort.Strings(names)
			for _, x := range names {
				if x == "" {
					continue
				}
				v := make([]byte, 4096)
				m, _ := unix.Lgetxattr(p, x, v)
				desc += fmt.Sprintf(" xattr %s=%q", x, v[:m])
			}
		}
		if rel != "." {
			out[rel] = desc
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReplayJournalConverges runs every journaled operation through a real
// mount, then applies the journal to a copy of the starting tree, ships
// the dirty ranges the index names from the primary's files, and expects
// the two trees to be identical: contents, modes, owners, links, symbolic
// links, devices, xattrs and hardlinks.
func TestReplayJournalConverges(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for a FUSE mount")
	}
	dir := t.TempDir()
	primary, secondary, mnt, state := filepath.Join(dir, "p"), filepath.Join(dir, "s"), filepath.Join(dir, "m"), filepath.Join(dir, "state")
	for _, d := range []string{primary, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The starting tree, on both sides.
	must(os.MkdirAll(filepath.Join(primary, "old/deep"), 0o755))
	must(os.WriteFile(filepath.Join(primary, "old/deep/f"), bytes.Repeat([]byte("x"), 10000), 0o644))
	must(os.WriteFile(filepath.Join(primary, "keep"), []byte("unchanged"), 0o600))
	must(os.WriteFile(filepath.Join(primary, "gone"), []byte("deleted later"), 0o644))
	if out, err := exec.Command("cp", "-a", primary, secondary).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}

	_, err := node.Init(state, "p", "")
	must(err)
	n, err := node.Open(state, slog.New(slog.DiscardHandler))
	must(err)
	defer n.Close()
	m, err := georepfs.New(context.Background(), georepfs.Options{Backing: primary, Mountpoint: mnt, Journal: n.Journal,
		Logger: slog.New(slog.DiscardHandler), BeforeMount: func(root string) error { return n.ClaimBacking(root, georepfs.HiddenDir) }})
	must(err)
	unmounted := false
	defer func() {
		if !unmounted {
			m.Close()
		}
	}()

	p := func(s string) string { return filepath.Join(mnt, s) }
	must(os.WriteFile(p("new"), []byte("hello world"), 0o640))
	f, err := os.OpenFile(p("new"), os.O_WRONLY, 0)
	must(err)
	_, err = f.WriteAt([]byte("HELLO"), 0)
	must(err)
	_, err = f.WriteAt([]byte("tail"), 100000) // a hole
	must(err)
	must(f.Close())
	must(os.Mkdir(p("d"), 0o2750))
	must(unix.Mkfifo(p("d/fifo"), 0o600))
	must(unix.Mknod(p("d/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(os.Symlink("../new", p("d/link")))
	must(os.Link(p("new"), p("d/hard")))
	must(os.Lchown(p("d/hard"), 1000, 1000))
	must(os.Remove(p("gone")))
	must(os.Rename(p("old"), p("moved")))                 // a directory, with a file below
	must(os.WriteFile(p("moved/deep/f"), []byte("y"), 0)) // O_TRUNC and write below it
	must(os.WriteFile(p("a"), []byte("A"), 0o644))
	must(os.WriteFile(p("b"), []byte("B"), 0o644))
	must(unix.Renameat2(unix.AT_FDCWD, p("a"), unix.AT_FDCWD, p("b"), unix.RENAME_EXCHANGE))
	must(os.Chmod(p("a"), 0o604))
	ts := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(os.Chtimes(p("keep"), ts, ts))
	must(unix.Setxattr(p("keep"), "user.color", []byte("blue"), 0))
	must(unix.Setxattr(p("keep"), "user.tmp", []byte("x"), 0))
	must(unix.Removexattr(p("keep"), "user.tmp"))
	must(os.Truncate(p("b"), 0))
	g, err := os.OpenFile(p("alloc"), os.O_CREATE|os.O_WRONLY, 0o644)
	must(err)
	must(unix.Fallocate(int(g.Fd()), 0, 0, 8192))
	must(g.Close())
	src, err := os.Open(p("new"))
	must(err)
	dst, err := os.OpenFile(p("copy"), os.O_CREATE|os.O_WRONLY, 0o644)
	must(err)
	offIn, offOut := int64(0), int64(0)
	_, err = unix.CopyFileRange(int(src.Fd()), &offIn, int(dst.Fd()), &offOut, 11, 0)
	must(err)
	src.Close()
	must(dst.Close())
	must(os.Mkdir(p("empty"), 0o700))
	must(os.Mkdir(p("rmd"), 0o700))
	must(os.Remove(p("rmd")))

	// Stop the mount and take the journal and the dirty files.
	must(m.Close())
	unmounted = true
	must(n.Journal.Flush(context.Background()))
	var recs []journal.Record
	must(n.Journal.Since(context.Background(), 0, func(r *journal.Record) bool { recs = append(recs, *r); return true }))
	dirty, err := n.Index.Dirty()
	must(err)

	sfd, err := unix.Open(secondary, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(err)
	defer unix.Close(sfd)
	ap := NewApplier(sfd)
	for i := range recs {
		if err := ap.Apply(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range dirty {
		for _, path := range st.Paths {
			data, err := os.ReadFile(filepath.Join(primary, path))
			must(err)
			ranges := st.Dirty
			if st.Whole {
				ranges = []journal.Range{{0, int64(len(data))}}
			}
			for _, r := range ranges {
				end := min(r.End(), int64(len(data)))
				if r[0] < end {
					must(ap.WriteAt(path, r[0], data[r[0]:end]))
				}
			}
		}
	}
	// Shipping ends by setting the times of what it wrote; compare
	// everything but times here.
	want, got := treeState(t, primary), treeState(t, secondary)
	for path, w := range want {
		if g, ok := got[path]; !ok {
			t.Errorf("%s missing on the secondary", path)
		} else if g != w {
			t.Errorf("%s differs:\n primary   %s\n secondary %s", path, w, g)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("%s on the secondary only", path)
		}
	}
	if t.Failed() {
		for _, r := range recs {
			t.Logf("%s", r.String())
		}
	}
	// A second application (a batch redone after a crash) changes nothing,
	// RENAME_EXCHANGE aside, which the batch engine tracks per record.
	for i := range recs {
		if recs[i].Flags&unix.RENAME_EXCHANGE != 0 {
			continue
		}
		if err := ap.Apply(&recs[i]); err != nil && !isHarmlessRedo(err) {
			t.Errorf("redo: %v", err)
		}
	}
}

// isHarmlessRedo: replaying a record over the end state can meet an entry
// that a later record changed (a fifo's create over a file, say).
func isHarmlessRedo(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "another file type") || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTEMPTY))
}
