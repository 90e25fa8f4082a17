package sync

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheckPath(t *testing.T) {
	good := []string{"", "a", "a/b", "a b/c", ".hidden", "..dots", "a/...", strings.Repeat("n", 255), "é/ü"}
	bad := []string{"/", "/etc/passwd", "a/", "a//b", "./a", "a/./b", "..", "../x", "a/../../x", "a/..", "a\x00b",
		strings.Repeat("n", 256), strings.Repeat("d/", 2048)}
	for _, p := range good {
		if err := CheckPath(p); err != nil {
			t.Errorf("CheckPath(%q) = %v, want ok", p, err)
		}
	}
	for _, p := range bad {
		if err := CheckPath(p); !errors.Is(err, ErrBadPath) {
			t.Errorf("CheckPath(%q) = %v, want ErrBadPath", p, err)
		}
	}
}

// FuzzCheckPath: no panic, and an accepted path stays beneath the root
// whatever the names are.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"", "a/b", "../x", "/abs", "a//b", "a/./b", "a\x00b", "a/..", strings.Repeat("x/", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if CheckPath(p) != nil {
			return
		}
		if filepath.IsAbs(p) || strings.Contains(p, "\x00") {
			t.Fatalf("accepted %q", p)
		}
		if c := filepath.Clean("/root/" + p); c != "/root" && !strings.HasPrefix(c, "/root/") {
			t.Fatalf("accepted %q which resolves to %q", p, c)
		}
		if p != "" && filepath.Clean(p) != p {
			t.Fatalf("accepted unclean %q", p)
		}
	})
}

// TestOpenBeneathRefusesEscapes builds a backing dir with symbolic links
// pointing out of it and checks that nothing resolves through them.
func TestOpenBeneathRefusesEscapes(t *testing.T) {
	dir := t.TempDir()
	root, outside := filepath.Join(dir, "root"), filepath.Join(dir, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(outside, filepath.Join(root, "escape")))
	must(os.Symlink("../../outside/secret", filepath.Join(root, "sub", "link")))
	must(os.Symlink("/proc/self/root/etc", filepath.Join(root, "magic")))
	rfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(err)
	defer unix.Close(rfd)

	for _, p := range []string{"escape/secret", "escape", "sub/link", "magic/passwd"} {
		fd, err := OpenBeneath(rfd, p, unix.O_RDONLY, 0)
		if err == nil {
			unix.Close(fd)
			t.Errorf("OpenBeneath(%q) followed a link out of the root", p)
		}
	}
	// Creating through a symlinked parent is refused too.
	if fd, _, err := OpenParent(rfd, "escape/new"); err == nil {
		unix.Close(fd)
		t.Error("OpenParent resolved a symlinked parent")
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); err == nil {
		t.Error("a file appeared outside the root")
	}
	for _, p := range []string{"../outside/secret", "/etc/passwd", "a\x00b"} {
		if _, err := OpenBeneath(rfd, p, unix.O_RDONLY, 0); !errors.Is(err, ErrBadPath) {
			t.Errorf("OpenBeneath(%q) = %v, want ErrBadPath", p, err)
		}
	}
	// Ordinary paths work.
	fd, name, err := OpenParent(rfd, "sub/new")
	must(err)
	if name != "new" {
		t.Fatalf("name %q", name)
	}
	nfd, err := unix.Openat(fd, name, unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW, 0o644)
	must(err)
	unix.Close(nfd)
	unix.Close(fd)
	if _, err := os.Stat(filepath.Join(root, "sub", "new")); err != nil {
		t.Fatal(err)
	}
	fd, err = OpenBeneath(rfd, "", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(err)
	unix.Close(fd)
}
