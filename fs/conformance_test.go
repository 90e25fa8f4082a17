package fs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The conformance test runs one script of POSIX operations twice, in a
// native directory and in the journaled mount, as root and as an
// unprivileged user (uid 65534), each time in a child process with that
// identity. Every step's outcome (errno, and the owner, group, mode and
// link count of what it made) must be the same on both: the mount must
// behave like the backing filesystem for permission checks, ownership,
// error codes, name limits and rename/unlink/rmdir semantics.

const (
	confEnv     = "GEOREP_CONFORMANCE_DIR"
	nobody      = 65534
	strangerGID = 4242 // a group the unprivileged user is not in
)

// confStep is one line of a script's outcome.
type confStep struct {
	Step   string `json:"step"`
	Result string `json:"result"`
}

// confSetup prepares base (as root) identically for both runs.
func confSetup(t *testing.T, base string) {
	t.Helper()
	mk := func(p string, mode uint32, uid, gid int) {
		must(t, unix.Mkdir(filepath.Join(base, p), 0))
		must(t, os.Chown(filepath.Join(base, p), uid, gid))
		must(t, unix.Chmod(filepath.Join(base, p), mode))
	}
	file := func(p string, mode uint32, uid, gid int) {
		must(t, os.WriteFile(filepath.Join(base, p), []byte("content"), 0o600))
		must(t, os.Chown(filepath.Join(base, p), uid, gid))
		must(t, unix.Chmod(filepath.Join(base, p), mode))
	}
	mk("pub", 0o777, 0, 0)
	mk("priv", 0o700, 0, 0)
	file("priv/secret", 0o600, 0, 0)
	file("rofile", 0o444, 0, 0)
	mk("sticky", 0o1777, 0, 0)
	file("sticky/rootfile", 0o666, 0, 0)
	file("sticky/userfile", 0o644, nobody, nobody)
	mk("sgid", 0o2777, 0, strangerGID)
	file("userfile", 0o644, nobody, nobody)
}

// confScript runs the operations in base and returns their outcomes.
func confScript(base string) []confStep {
	var out []confStep
	p := func(rel string) string { return filepath.Join(base, rel) }
	res := func(err error) string {
		if err == nil {
			return "ok"
		}
		var en syscall.Errno
		if errors.As(err, &en) {
			return unix.ErrnoName(en)
		}
		return err.Error()
	}
	step := func(name string, err error) { out = append(out, confStep{name, res(err)}) }
	stat := func(name, rel string) {
		var st unix.Stat_t
		if err := unix.Lstat(p(rel), &st); err != nil {
			step(name, err)
			return
		}
		r := fmt.Sprintf("mode=%o uid=%d gid=%d nlink=%d", st.Mode, st.Uid, st.Gid, st.Nlink)
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			r += fmt.Sprintf(" size=%d", st.Size)
		}
		out = append(out, confStep{name, r})
	}
	create := func(rel string, flags int, mode uint32) error {
		fd, err := unix.Open(p(rel), flags|unix.O_CREAT|unix.O_WRONLY, mode)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	open := func(rel string, flags int) error {
		fd, err := unix.Open(p(rel), flags, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	unix.Umask(0o022)

	step("create pub/a 0640", create("pub/a", 0, 0o640))
	stat("stat pub/a", "pub/a")
	step("create O_EXCL existing", create("pub/a", unix.O_EXCL, 0o600))
	step("write pub/a", os.WriteFile(p("pub/a"), []byte("hello"), 0))
	stat("stat pub/a after write", "pub/a")
	step("open priv/secret", open("priv/secret", unix.O_RDONLY))
	step("create in priv", create("priv/x", 0, 0o644))
	step("readdir priv", func() error { _, err := os.ReadDir(p("priv")); return err }())
	step("access priv X_OK", unix.Access(p("priv"), unix.X_OK))
	step("open rofile for writing", open("rofile", unix.O_WRONLY))
	step("open rofile O_TRUNC", open("rofile", unix.O_RDONLY|unix.O_TRUNC))
	step("truncate rofile", unix.Truncate(p("rofile"), 0))
	step("chmod rofile", unix.Chmod(p("rofile"), 0o666))
	step("chown pub/a to root", unix.Lchown(p("pub/a"), 0, 0))
	step("chown pub/a to stranger group", unix.Lchown(p("pub/a"), -1, strangerGID))
	step("utimes rofile explicit", unix.UtimesNano(p("rofile"), []unix.Timespec{{Sec: 1}, {Sec: 2}}))
	step("utimes rofile now", unix.UtimesNanoAt(unix.AT_FDCWD, p("rofile"), nil, 0))
	step("utimes userfile now", unix.UtimesNanoAt(unix.AT_FDCWD, p("userfile"), nil, 0))
	step("unlink sticky/rootfile", unix.Unlink(p("sticky/rootfile")))
	step("rename sticky/rootfile", unix.Rename(p("sticky/rootfile"), p("sticky/r2")))
	step("write sticky/rootfile", open("sticky/rootfile", unix.O_WRONLY))
	step("unlink sticky/userfile", unix.Unlink(p("sticky/userfile")))
	step("mkdir pub/d 0755", unix.Mkdir(p("pub/d"), 0o755))
	stat("stat pub/d", "pub/d")
	step("create pub/d/f", create("pub/d/f", 0, 0o644))
	step("rmdir non-empty", unix.Rmdir(p("pub/d")))
	step("rmdir a file", unix.Rmdir(p("pub/a")))
	step("unlink a dir", unix.Unlink(p("pub/d")))
	step("rename dir into itself", unix.Rename(p("pub/d"), p("pub/d/sub")))
	step("mkdir pub/e", unix.Mkdir(p("pub/e"), 0o755))
	step("rename file over dir", unix.Rename(p("pub/a"), p("pub/e")))
	step("rename dir over file", unix.Rename(p("pub/e"), p("pub/a")))
	step("rename dir over non-empty dir", unix.Rename(p("pub/e"), p("pub/d")))
	step("rename dir over empty dir", unix.Rename(p("pub/d"), p("pub/e")))
	stat("stat pub/e/f", "pub/e/f")
	step("rename to itself", unix.Rename(p("pub/a"), p("pub/a")))
	step("name of 256 bytes", create("pub/"+strings.Repeat("n", 256), 0, 0o644))
	step("name of 255 bytes", create("pub/"+strings.Repeat("n", 255), 0, 0o644))
	step("path of 4096 bytes", open("pub/"+strings.Repeat("d/", 2047)+"x", unix.O_RDONLY))
	step("symlink l1", unix.Symlink("l2", p("pub/l1")))
	step("symlink l2", unix.Symlink("l1", p("pub/l2")))
	step("open symlink loop", open("pub/l1", unix.O_RDONLY))
	stat("stat pub/l1", "pub/l1")
	step("link a dir", unix.Link(p("pub/e"), p("pub/el")))
	step("link pub/a", unix.Link(p("pub/a"), p("pub/a2")))
	stat("stat pub/a after link", "pub/a")
	step("link onto existing", unix.Link(p("pub/a"), p("pub/a2")))
	step("link rofile (not owner)", unix.Link(p("rofile"), p("pub/ro2")))
	step("mkdir existing", unix.Mkdir(p("pub/e"), 0o755))
	step("open missing", open("pub/missing", unix.O_RDONLY))
	step("open file as dir", open("pub/a/x", unix.O_RDONLY))
	step("open dir for writing", open("pub/e", unix.O_WRONLY))
	step("truncate a dir", unix.Truncate(p("pub/e"), 0))
	step("rmdir dot", unix.Rmdir(p("pub/e/.")))
	step("setxattr user on own file", unix.Setxattr(p("pub/a"), "user.k", []byte("v"), 0))
	step("setxattr user on rofile", unix.Setxattr(p("rofile"), "user.k", []byte("v"), 0))
	step("setxattr trusted", unix.Setxattr(p("pub/a"), "trusted.k", []byte("v"), 0))
	step("setxattr XATTR_CREATE existing", unix.Setxattr(p("pub/a"), "user.k", []byte("w"), unix.XATTR_CREATE))
	step("removexattr missing", unix.Removexattr(p("pub/a"), "user.nope"))
	step("create in sgid dir", create("sgid/f", 0, 0o755))
	stat("stat sgid/f", "sgid/f")
	step("chmod g+s in stranger group", unix.Chmod(p("sgid/f"), 0o2755))
	stat("stat sgid/f after chmod", "sgid/f")
	step("mkdir in sgid dir", unix.Mkdir(p("sgid/d"), 0o755))
	stat("stat sgid/d", "sgid/d")
	step("create setuid file", create("pub/suid", 0, 0o4755))
	stat("stat pub/suid", "pub/suid")
	step("write to setuid file", os.WriteFile(p("pub/suid"), []byte("x"), 0))
	stat("stat pub/suid after write", "pub/suid")
	step("chmod setuid again", unix.Chmod(p("pub/suid"), 0o4755))
	step("truncate setuid file", unix.Truncate(p("pub/suid"), 0))
	stat("stat pub/suid after truncate", "pub/suid")
	step("mkdir sticky dir", unix.Mkdir(p("pub/st"), 0o1777))
	stat("stat pub/st", "pub/st")
	step("mkfifo", unix.Mkfifo(p("pub/fifo"), 0o644))
	stat("stat pub/fifo", "pub/fifo")
	step("mknod char device", unix.Mknod(p("pub/cdev"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
	step("rename noreplace onto existing", unix.Renameat2(unix.AT_FDCWD, p("pub/a"), unix.AT_FDCWD, p("pub/fifo"), unix.RENAME_NOREPLACE))
	step("rename exchange", unix.Renameat2(unix.AT_FDCWD, p("pub/a"), unix.AT_FDCWD, p("pub/fifo"), unix.RENAME_EXCHANGE))
	stat("stat pub/a after exchange", "pub/a")
	step("ofd lock conflict", func() error {
		f1, err := os.OpenFile(p("pub/fifo"), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f1.Close()
		f2, err := os.OpenFile(p("pub/fifo"), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f2.Close()
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 10}
		if err := unix.FcntlFlock(f1.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			return fmt.Errorf("first lock: %w", err)
		}
		return unix.FcntlFlock(f2.Fd(), unix.F_OFD_SETLK, &lk)
	}())
	step("flock conflict", func() error {
		f1, err := os.Open(p("pub/fifo"))
		if err != nil {
			return err
		}
		defer f1.Close()
		f2, err := os.Open(p("pub/fifo"))
		if err != nil {
			return err
		}
		defer f2.Close()
		if err := unix.Flock(int(f1.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			return fmt.Errorf("first flock: %w", err)
		}
		return unix.Flock(int(f2.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}())
	step("append write", func() error {
		f, err := os.OpenFile(p("pub/fifo"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.Write([]byte(" more"))
		return err
	}())
	stat("stat after append", "pub/fifo")
	step("chmod own file", unix.Chmod(p("pub/fifo"), 0o600))
	stat("stat after chmod", "pub/fifo")
	step("unlink pub/a2", unix.Unlink(p("pub/a2")))
	step("rmdir pub/e", unix.Rmdir(p("pub/e")))
	step("rmdir missing", unix.Rmdir(p("pub/e")))
	return out
}

// TestConformanceChild is the child half of TestConformance: it runs the
// script in the directory named by the environment and prints outcomes.
func TestConformanceChild(t *testing.T) {
	base := os.Getenv(confEnv)
	if base == "" {
		t.Skip("runs as a child of TestConformance")
	}
	enc := json.NewEncoder(os.Stdout)
	for _, s := range confScript(base) {
		enc.Encode(s)
	}
}

// runConformance runs the script in base as uid and returns its outcomes.
func runConformance(t *testing.T, exe, base string, uid int) []confStep {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^TestConformanceChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), confEnv+"="+base)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	var steps []confStep
	dec := json.NewDecoder(stdout)
	for {
		var s confStep
		if err := dec.Decode(&s); err == io.EOF {
			break
		} else if err != nil {
			// The test binary prints PASS at the end.
			break
		}
		steps = append(steps, s)
	}
	io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("conformance child as uid %d: %v\n%s", uid, err, stderr.String())
	}
	return steps
}

// TestConformance compares the mount with the native filesystem.
func TestConformance(t *testing.T) {
	tm := newTestMount(t)
	// The child runs as an unprivileged user: it needs a copy of the test
	// binary it can execute and directories it can reach.
	bin := t.TempDir()
	must(t, os.Chmod(bin, 0o755))
	must(t, os.Chmod(filepath.Dir(bin), 0o755))
	self, err := os.Executable()
	must(t, err)
	exe := filepath.Join(bin, "conformance.test")
	data, err := os.ReadFile(self)
	must(t, err)
	must(t, os.WriteFile(exe, data, 0o755))
	native := t.TempDir()
	must(t, os.Chmod(native, 0o755))
	must(t, os.Chmod(filepath.Dir(native), 0o755))
	for _, d := range []string{filepath.Dir(tm.mnt), tm.mnt} {
		must(t, os.Chmod(d, 0o755))
	}
	for _, uid := range []int{0, nobody} {
		t.Run(fmt.Sprintf("uid%d", uid), func(t *testing.T) {
			name := fmt.Sprintf("run%d", uid)
			nat, mnt := filepath.Join(native, name), tm.path(name)
			for _, d := range []string{nat, mnt} {
				must(t, os.Mkdir(d, 0o755))
				confSetup(t, d)
			}
			want := runConformance(t, exe, nat, uid)
			got := runConformance(t, exe, mnt, uid)
			if len(want) < 50 {
				t.Fatalf("native run produced only %d steps", len(want))
			}
			if len(got) != len(want) {
				t.Fatalf("mount run produced %d steps, native %d", len(got), len(want))
			}
			diffs := 0
			for i := range want {
				if got[i] != want[i] {
					diffs++
					t.Errorf("%s: mount %q, native %q", want[i].Step, got[i].Result, want[i].Result)
				}
			}
			if testing.Verbose() {
				for _, s := range got {
					t.Logf("%-36s %s", s.Step, s.Result)
				}
			}
			t.Logf("%d steps compared as uid %d, %d differ", len(want), uid, diffs)
		})
	}
	_ = time.Second
}
