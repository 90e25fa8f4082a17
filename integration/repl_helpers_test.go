package integration

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cluster is a primary and its secondaries, real daemons on 127.0.0.1.
type cluster struct {
	t       *testing.T
	primary *daemon
	second  []*daemon
	addrs   map[*daemon]string
}

// freeAddr returns a 127.0.0.1 address nobody listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newCluster initializes a primary and n secondaries that trust each
// other, and starts them. extra are daemon flags for every node.
func newCluster(t *testing.T, n int, extra ...string) *cluster {
	return newClusterVia(t, n, nil, extra...)
}

// newClusterVia is newCluster where the primary reaches secondary i
// through the address via(i, addr) returns (a proxy), if via is set.
func newClusterVia(t *testing.T, n int, via func(i int, addr string) string, extra ...string) *cluster {
	t.Helper()
	var route func(from, to int, addr string) string
	if via != nil {
		route = func(from, to int, addr string) string {
			if from == 0 {
				return via(to, addr)
			}
			return addr
		}
	}
	return newClusterRoutes(t, n, route, extra...)
}

// newClusterRoutes is newCluster where node from reaches node to (0 is
// the primary) at the address route(from, to, addr) returns, if route is
// set.
func newClusterRoutes(t *testing.T, n int, route func(from, to int, addr string) string, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, addrs: map[*daemon]string{}}
	type nd struct{ name, state, backing, mount, addr string }
	var nodes []nd
	for i := 0; i <= n; i++ {
		name := "p"
		if i > 0 {
			name = fmt.Sprintf("s%d", i)
		}
		state, backing, mount := nodeDirs(t, name)
		nodes = append(nodes, nd{name, state, backing, mount, freeAddr(t)})
	}
	for i, a := range nodes {
		for k, b := range nodes {
			if a.name != b.name {
				id := strings.TrimSpace(mustGeorep(t, "id", "--state", b.state))
				addr := b.addr
				if route != nil {
					addr = route(i, k, addr)
				}
				mustGeorep(t, "peer", "add", "--state", a.state, b.name, addr, id)
			}
		}
	}
	for i, x := range nodes {
		args := append([]string{"--listen", x.addr}, extra...)
		if i == 0 {
			args = append(args, "--primary")
		}
		d := startDaemon(t, x.state, x.backing, x.mount, args...)
		c.addrs[d] = x.addr
		if i == 0 {
			c.primary = d
		} else {
			c.second = append(c.second, d)
		}
	}
	return c
}

// syncWait runs `georep sync --wait` on the primary.
func (c *cluster) syncWait() {
	c.t.Helper()
	r := georep(c.t, "sync", "--state", c.primary.state, "--wait", "--timeout", "60s")
	if r.code != 0 {
		c.dumpLogs()
		c.t.Fatalf("sync --wait: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
}

func (c *cluster) dumpLogs() {
	c.t.Logf("primary log:\n%s", tail(c.primary.log.String(), 40))
	for i, s := range c.second {
		c.t.Logf("secondary %d log:\n%s", i+1, tail(s.log.String(), 40))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// verifyClean runs `georep verify` and fails on differences.
func (c *cluster) verifyClean() {
	c.t.Helper()
	r := georep(c.t, "verify", "--state", c.primary.state)
	if r.code != 0 {
		c.dumpLogs()
		if dir := os.Getenv("GEOREP_TEST_DUMP_DIR"); dir != "" {
			// Everything to look at after the test is gone (run with
			// GEOREP_TEST_KEEP_JOURNAL=1 for the whole journal).
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "primary-journal.txt"), []byte(georep(c.t, "journal", "--state", c.primary.state, "--json").stdout), 0o644)
			c.primary.stop()
			os.WriteFile(filepath.Join(dir, "primary.log"), c.primary.log.Bytes(), 0o644)
			exec.Command("cp", "-a", c.primary.backing, filepath.Join(dir, "primary-backing")).Run()
			for i, s := range c.second {
				s.stop()
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("sec%d.log", i+1)), s.log.Bytes(), 0o644)
				exec.Command("cp", "-a", s.state, filepath.Join(dir, fmt.Sprintf("sec%d-state", i+1))).Run()
				exec.Command("cp", "-a", s.backing, filepath.Join(dir, fmt.Sprintf("sec%d-backing", i+1))).Run()
			}
		}
		c.t.Fatalf("verify: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// converged syncs, verifies, and compares every secondary's backing dir
// and mount with the primary's backing dir.
func (c *cluster) converged() {
	c.t.Helper()
	c.syncWait()
	c.verifyClean()
	want := snapshotTree(c.t, c.primary.backing)
	for i, s := range c.second {
		if diff := diffTrees(want, snapshotTree(c.t, s.backing)); diff != "" {
			c.dumpLogs()
			c.t.Fatalf("secondary %d backing dir differs from the primary's:\n%s", i+1, diff)
		}
		if diff := diffContent(want, snapshotTree(c.t, s.mount)); diff != "" {
			c.t.Fatalf("secondary %d mount shows other contents than the primary's backing dir:\n%s", i+1, diff)
		}
	}
}

// node is one entry of a tree snapshot.
type fileNode struct {
	mode     uint32
	uid, gid uint32
	size     int64
	mtime    int64
	hash     [32]byte
	target   string
	rdev     uint64
	nlink    uint64
	xattrs   map[string]string
	linkedTo string // the first path of the same inode, for hardlinks
}

// snapshotTree describes every entry below root (georep's own dir
// excluded), by path.
func snapshotTree(t testing.TB, root string) map[string]fileNode {
	t.Helper()
	out := map[string]fileNode{}
	inodes := map[uint64]string{}
	walkTree(t, root, func(rel, p string, fi os.FileInfo) error {
		st := fi.Sys().(*syscall.Stat_t)
		n := fileNode{mode: st.Mode, uid: st.Uid, gid: st.Gid, mtime: st.Mtim.Nano(), nlink: uint64(st.Nlink)}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			n.size = st.Size
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.hash = sha256.Sum256(b)
			if first, ok := inodes[st.Ino]; ok {
				n.linkedTo = first
			} else {
				inodes[st.Ino] = rel
			}
		case unix.S_IFLNK:
			n.target, _ = os.Readlink(p)
		case unix.S_IFCHR, unix.S_IFBLK:
			n.rdev = st.Rdev
		case unix.S_IFDIR:
			n.nlink = 0 // subdirectory count: not a property of the tree's contents
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			n.xattrs = listXattrs(p)
		}
		out[rel] = n
		return nil
	})
	return out
}

func listXattrs(p string) map[string]string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return nil
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		v := make([]byte, 64<<10)
		k, err := unix.Lgetxattr(p, name, v)
		if err == nil {
			out[name] = string(v[:k])
		}
	}
	return out
}

// diffTrees lists entries whose metadata or contents differ.
func diffTrees(a, b map[string]fileNode) string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(a)) {
		x, ok := a[p]
		y, ok2 := b[p]
		switch {
		case !ok2:
			out = append(out, p+": missing on the replica")
		case !ok:
		case x.mode != y.mode || x.uid != y.uid || x.gid != y.gid:
			out = append(out, fmt.Sprintf("%s: mode/owner %o %d:%d vs %o %d:%d", p, x.mode, x.uid, x.gid, y.mode, y.uid, y.gid))
		case x.size != y.size || x.hash != y.hash:
			out = append(out, fmt.Sprintf("%s: contents differ (size %d vs %d)", p, x.size, y.size))
		case x.mtime != y.mtime:
			out = append(out, fmt.Sprintf("%s: mtime %s vs %s", p, time.Unix(0, x.mtime).Format(time.RFC3339Nano), time.Unix(0, y.mtime).Format(time.RFC3339Nano)))
		case x.target != y.target || x.rdev != y.rdev:
			out = append(out, fmt.Sprintf("%s: target/device %q %d vs %q %d", p, x.target, x.rdev, y.target, y.rdev))
		case x.nlink != y.nlink || x.linkedTo != y.linkedTo:
			out = append(out, fmt.Sprintf("%s: hardlinks %d (%q) vs %d (%q)", p, x.nlink, x.linkedTo, y.nlink, y.linkedTo))
		case !maps.Equal(x.xattrs, y.xattrs):
			out = append(out, fmt.Sprintf("%s: xattrs %v vs %v", p, x.xattrs, y.xattrs))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			out = append(out, p+": only on the replica")
		}
	}
	slices.Sort(out)
	if len(out) > 30 {
		out = append(out[:30], fmt.Sprintf("... and %d more", len(out)-30))
	}
	return strings.Join(out, "\n")
}

// diffContent compares only names, types and contents (what the mount
// shows an application).
func diffContent(a, b map[string]fileNode) string {
	var out []string
	for p, x := range a {
		y, ok := b[p]
		if !ok || x.mode&unix.S_IFMT != y.mode&unix.S_IFMT || x.hash != y.hash || x.target != y.target {
			out = append(out, p)
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			out = append(out, p+" (extra)")
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// workload applies random operations of every kind SPEC §4.1 lists to
// the tree at root (a mount).
type workload struct {
	t    testing.TB
	root string
	rng  *rand.Rand
	ops  map[string]int
}

func newWorkload(t testing.TB, root string, seed uint64) *workload {
	return &workload{t: t, root: root, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), ops: map[string]int{}}
}

// entries lists the paths below root, directories and others apart.
func (w *workload) entries() (dirs, files []string) {
	dirs = []string{""}
	filepath.WalkDir(w.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == w.root {
			return nil
		}
		rel, _ := filepath.Rel(w.root, p)
		if d.IsDir() {
			dirs = append(dirs, rel)
		} else {
			files = append(files, rel)
		}
		return nil
	})
	return
}

func (w *workload) pick(s []string) string { return s[w.rng.IntN(len(s))] }

func (w *workload) abs(rel string) string { return filepath.Join(w.root, rel) }

func (w *workload) newName(dirs []string) string {
	return filepath.Join(w.pick(dirs), fmt.Sprintf("n%04d", w.rng.IntN(10000)))
}

func (w *workload) data(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(w.rng.IntN(256))
	}
	return b
}

// step runs one random operation; failures the tree's state explains
// (EEXIST, ENOTEMPTY...) are part of the game.
func (w *workload) step() {
	dirs, files := w.entries()
	regular := slices.DeleteFunc(slices.Clone(files), func(p string) bool {
		fi, err := os.Lstat(w.abs(p))
		return err != nil || !fi.Mode().IsRegular()
	})
	op := w.rng.IntN(20)
	if len(regular) == 0 && op > 3 {
		op = 0
	}
	var err error
	name := ""
	switch op {
	case 0, 1: // create and write
		name = "create"
		err = os.WriteFile(w.abs(w.newName(dirs)), w.data(w.rng.IntN(300_000)), 0o640)
	case 2:
		name = "mkdir"
		err = os.Mkdir(w.abs(w.newName(dirs)), 0o750)
	case 3:
		name = "symlink"
		err = os.Symlink("../target-"+fmt.Sprint(w.rng.IntN(100)), w.abs(w.newName(dirs)))
	case 4, 5, 6: // write at a random offset, maybe past the end (sparse)
		name = "write"
		var f *os.File
		if f, err = os.OpenFile(w.abs(w.pick(regular)), os.O_WRONLY, 0); err == nil {
			_, err = f.WriteAt(w.data(1+w.rng.IntN(70_000)), int64(w.rng.IntN(1<<20)))
			f.Close()
		}
	case 7:
		name = "truncate"
		err = os.Truncate(w.abs(w.pick(regular)), int64(w.rng.IntN(200_000)))
	case 8:
		name = "unlink"
		err = os.Remove(w.abs(w.pick(files)))
	case 9:
		name = "rmdir"
		if len(dirs) > 1 {
			err = os.Remove(w.abs(w.pick(dirs[1:])))
		}
	case 10, 11:
		name = "rename"
		from := w.pick(append(slices.Clone(files), dirs[1:]...))
		err = os.Rename(w.abs(from), w.abs(w.newName(dirs)))
	case 12:
		name = "rename-exchange"
		if len(files) > 1 {
			err = unix.Renameat2(unix.AT_FDCWD, w.abs(w.pick(files)), unix.AT_FDCWD, w.abs(w.pick(files)), unix.RENAME_EXCHANGE)
		}
	case 13:
		name = "link"
		err = os.Link(w.abs(w.pick(regular)), w.abs(w.newName(dirs)))
	case 14:
		name = "chmod"
		err = os.Chmod(w.abs(w.pick(regular)), os.FileMode(0o600+w.rng.IntN(0o177)))
	case 15:
		name = "chown"
		err = os.Lchown(w.abs(w.pick(files)), 1000+w.rng.IntN(3), 1000+w.rng.IntN(3))
	case 16:
		name = "utimes"
		ts := time.Unix(int64(1_600_000_000+w.rng.IntN(100_000_000)), int64(w.rng.IntN(1e9)))
		err = os.Chtimes(w.abs(w.pick(regular)), ts, ts)
	case 17:
		name = "xattr"
		p := w.abs(w.pick(regular))
		if w.rng.IntN(3) == 0 {
			err = unix.Removexattr(p, "user.k")
			if err == unix.ENODATA {
				err = nil
			}
		} else {
			err = unix.Setxattr(p, "user.k", w.data(1+w.rng.IntN(100)), 0)
		}
	case 18:
		name = "fallocate"
		var f *os.File
		if f, err = os.OpenFile(w.abs(w.pick(regular)), os.O_WRONLY, 0); err == nil {
			if w.rng.IntN(2) == 0 {
				err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(w.rng.IntN(100_000)), int64(w.rng.IntN(100_000)))
			} else {
				err = unix.Fallocate(int(f.Fd()), 0, int64(w.rng.IntN(100_000)), int64(1+w.rng.IntN(100_000)))
			}
			f.Close()
		}
	case 19:
		name = "mknod/copy_file_range"
		if w.rng.IntN(2) == 0 {
			err = unix.Mkfifo(w.abs(w.newName(dirs)), 0o644)
		} else {
			err = copyRange(w.abs(w.pick(regular)), w.abs(w.pick(regular)))
		}
	}
	if err == nil {
		w.ops[name]++
	}
}

func copyRange(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer dst.Close()
	off := int64(0)
	_, err = unix.CopyFileRange(int(src.Fd()), &off, int(dst.Fd()), nil, 50_000, 0)
	return err
}
