package sync

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Paths a peer sends are untrusted. A secondary accepts only clean
// volume-relative paths and resolves them beneath its backing dir without
// following any symbolic link, so nothing a peer says can make it touch a
// file outside the backing dir. (The primary never sends a path through a
// symbolic link: journal paths come from the mount's inode tree.)

// Path limits of Linux file systems.
const (
	maxPath = 4095 // PATH_MAX less the terminating NUL
	maxName = 255  // NAME_MAX
)

// ErrBadPath is wrapped by every path refusal.
var ErrBadPath = errors.New("bad path from peer")

// CheckPath validates a volume-relative path from a peer: "" (the volume
// root) or slash-separated names, none empty, ".", ".." or longer than
// NAME_MAX, with no NUL, no leading or trailing slash, at most PATH_MAX.
func CheckPath(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > maxPath {
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrBadPath, len(p), maxPath)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%w: %q contains NUL", ErrBadPath, p)
	}
	if p[0] == '/' {
		return fmt.Errorf("%w: %q is absolute", ErrBadPath, p)
	}
	for name := range strings.SplitSeq(p, "/") {
		switch {
		case name == "":
			return fmt.Errorf("%w: %q has an empty name", ErrBadPath, p)
		case name == "." || name == "..":
			return fmt.Errorf("%w: %q contains %q", ErrBadPath, p, name)
		case len(name) > maxName:
			return fmt.Errorf("%w: %q has a name longer than %d", ErrBadPath, p, maxName)
		}
	}
	return nil
}

// beneath is how every path from a peer is resolved under the backing
// dir: never above it, through no symbolic link, magic link or mount point.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// OpenBeneath opens the checked path p under the directory rootFD with
// flags (O_NOFOLLOW is implied: the last name is not followed either). It
// fails with ELOOP where a symbolic link stands in the way and EXDEV where
// resolution would leave the root.
func OpenBeneath(rootFD int, p string, flags int, mode uint32) (int, error) {
	if err := CheckPath(p); err != nil {
		return -1, err
	}
	if p == "" {
		p = "."
	}
	how := unix.OpenHow{Flags: uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC), Mode: uint64(mode), Resolve: beneath}
	fd, err := unix.Openat2(rootFD, p, &how)
	if err != nil {
		return -1, fmt.Errorf("open %q beneath the backing dir: %w", p, err)
	}
	return fd, nil
}

// OpenParent opens, beneath rootFD, the directory that holds the last name
// of the checked path p, and returns it with that name, for the *at(2)
// calls that create, remove or rename entries (which never follow the
// last name).
func OpenParent(rootFD int, p string) (dirFD int, name string, err error) {
	if err := CheckPath(p); err != nil {
		return -1, "", err
	}
	if p == "" {
		return -1, "", fmt.Errorf("%w: the volume root has no parent", ErrBadPath)
	}
	dir, name := "", p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir, name = p[:i], p[i+1:]
	}
	fd, err := OpenBeneath(rootFD, dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, "", err
	}
	return fd, name, nil
}
