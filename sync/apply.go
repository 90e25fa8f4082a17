package sync

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/journal"
)

// Applier applies journal records to a secondary's backing dir. Every
// path is checked and resolved beneath the backing dir (OpenBeneath,
// OpenParent); nothing follows a symbolic link. Operations are idempotent
// where the file system allows, because a batch interrupted by a crash is
// applied again: creating what exists, removing what is gone and renaming
// what was already renamed succeed. (RENAME_EXCHANGE cannot be made
// idempotent here; the batch engine records its progress per record.)
type Applier struct {
	root int // descriptor of the backing dir
}

// NewApplier applies beneath the directory descriptor root, which the
// caller keeps open.
func NewApplier(root int) *Applier { return &Applier{root: root} }

// Apply applies the metadata of one record. Data travels separately
// (WriteAt); write records only make sure the file exists.
func (a *Applier) Apply(r *journal.Record) error {
	if err := CheckPath(r.Path); err != nil {
		return err
	}
	if r.NewPath != "" {
		if err := CheckPath(r.NewPath); err != nil {
			return err
		}
	}
	var err error
	switch r.Op {
	case journal.OpCreate:
		err = a.create(r)
	case journal.OpMkdir:
		err = a.atParent(r.Path, func(dir int, name string) error {
			return ignore(unix.Mkdirat(dir, name, perm(r.Mode)), unix.EEXIST)
		})
		if err == nil {
			err = a.setOwnerMode(r)
		}
	case journal.OpMknod:
		err = a.atParent(r.Path, func(dir int, name string) error {
			return ignore(unix.Mknodat(dir, name, derefU32(r.Mode), int(r.Rdev)), unix.EEXIST)
		})
		if err == nil {
			err = a.setOwnerMode(r)
		}
	case journal.OpSymlink:
		err = a.symlink(r)
	case journal.OpLink:
		err = a.link(r)
	case journal.OpUnlink:
		err = a.atParent(r.Path, func(dir int, name string) error {
			return ignore(unix.Unlinkat(dir, name, 0), unix.ENOENT)
		})
	case journal.OpRmdir:
		err = a.atParent(r.Path, func(dir int, name string) error {
			return ignore(unix.Unlinkat(dir, name, unix.AT_REMOVEDIR), unix.ENOENT)
		})
	case journal.OpRename:
		err = a.rename(r)
	case journal.OpSetattr:
		err = a.setattr(r)
	case journal.OpTruncate:
		err = a.withFile(r.Path, unix.O_WRONLY, func(fd int) error {
			if r.Size == nil {
				return nil
			}
			return unix.Ftruncate(fd, int64(*r.Size))
		})
		if err == nil && (r.Mode != nil || r.UID != nil || r.Atime != nil || r.Mtime != nil) {
			err = a.setattr(r)
		}
	case journal.OpFallocate:
		err = a.withFile(r.Path, unix.O_WRONLY, func(fd int) error {
			for _, rg := range r.Ranges {
				if err := unix.Fallocate(fd, r.Flags, rg[0], rg[1]); err != nil {
					return err
				}
			}
			return nil
		})
	case journal.OpSetxattr:
		err = a.withPath(r.Path, func(p string) error {
			return unix.Setxattr(p, r.Xattr, r.Value, int(r.Flags)&^(unix.XATTR_CREATE|unix.XATTR_REPLACE))
		})
	case journal.OpRemovexattr:
		err = a.withPath(r.Path, func(p string) error {
			return ignore(unix.Removexattr(p, r.Xattr), unix.ENODATA)
		})
	case journal.OpWrite, journal.OpResync:
		// Data and comparisons are the batch engine's.
	default:
		err = fmt.Errorf("unknown op %q", r.Op)
	}
	if err != nil {
		return fmt.Errorf("apply %s %q (seq %d): %w", r.Op, r.Path, r.Seq, err)
	}
	return nil
}

// WriteAt writes data at off into the file at the checked path p.
func (a *Applier) WriteAt(p string, off int64, data []byte) error {
	return a.withFile(p, unix.O_WRONLY, func(fd int) error {
		for len(data) > 0 {
			n, err := unix.Pwrite(fd, data, off)
			if err != nil {
				return fmt.Errorf("write %q at %d: %w", p, off, err)
			}
			data, off = data[n:], off+int64(n)
		}
		return nil
	})
}

func ignore(err error, ok syscall.Errno) error {
	if errors.Is(err, ok) {
		return nil
	}
	return err
}

func perm(m *uint32) uint32 {
	if m == nil {
		return 0o700
	}
	return *m & 0o7777
}

func derefU32(m *uint32) uint32 {
	if m == nil {
		return 0
	}
	return *m
}

func (a *Applier) atParent(p string, fn func(dir int, name string) error) error {
	dir, name, err := OpenParent(a.root, p)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	return fn(dir, name)
}

// withFile opens the regular file at p (never through a link) for fn.
// Anything else standing there (a device, a FIFO) is refused before it
// is opened: opening a device can act on it, and truncate or fallocate
// on a block device would reach the disk under it.
func (a *Applier) withFile(p string, flags int, fn func(fd int) error) error {
	fd, err := openRegular(a.root, p, flags)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn(fd)
}

// openRegular opens the regular file at the checked path p beneath
// rootFD with flags, refusing any other file type without opening it.
func openRegular(rootFD int, p string, flags int) (int, error) {
	pfd, err := OpenBeneath(rootFD, p, unix.O_PATH, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, fmt.Errorf("%q is not a regular file (mode %o): %w", p, st.Mode, unix.EINVAL)
	}
	// Reopen that very inode (the /proc link names it, whatever
	// happens to the name meanwhile).
	return unix.Open(fmt.Sprintf("/proc/self/fd/%d", pfd), flags|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
}

// withPath hands fn a path to the entry at p that names exactly the
// entry resolved beneath the root, for calls that take no descriptor: the
// /proc link of its O_PATH descriptor. Calls that follow it reach that
// very inode (a symbolic link itself, never its target).
func (a *Applier) withPath(p string, fn func(path string) error) error {
	fd, err := OpenBeneath(a.root, p, unix.O_PATH, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn(fmt.Sprintf("/proc/self/fd/%d", fd))
}

func (a *Applier) create(r *journal.Record) error {
	err := a.atParent(r.Path, func(dir int, name string) error {
		var st unix.Stat_t
		switch err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); {
		case err == nil:
			if st.Mode&unix.S_IFMT != unix.S_IFREG {
				return fmt.Errorf("%q exists and is not a regular file (mode %o): %w", r.Path, st.Mode, unix.EEXIST)
			}
			return nil // created before a redo
		case !errors.Is(err, unix.ENOENT):
			return err
		}
		fd, err := unix.Openat(dir, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm(r.Mode))
		if err != nil {
			return err
		}
		return unix.Close(fd)
	})
	if err != nil {
		return err
	}
	return a.setOwnerMode(r)
}

func (a *Applier) symlink(r *journal.Record) error {
	return a.atParent(r.Path, func(dir int, name string) error {
		err := unix.Symlinkat(r.Target, dir, name)
		if errors.Is(err, unix.EEXIST) {
			buf := make([]byte, 4096)
			n, rerr := unix.Readlinkat(dir, name, buf)
			if rerr == nil && string(buf[:n]) == r.Target {
				err = nil
			}
		}
		if err != nil {
			return err
		}
		if r.UID != nil && r.GID != nil {
			return unix.Fchownat(dir, name, int(*r.UID), int(*r.GID), unix.AT_SYMLINK_NOFOLLOW)
		}
		return nil
	})
}

func (a *Applier) link(r *journal.Record) error {
	odir, oname, err := OpenParent(a.root, r.Path)
	if err != nil {
		return err
	}
	defer unix.Close(odir)
	return a.atParent(r.NewPath, func(ndir int, nname string) error {
		err := unix.Linkat(odir, oname, ndir, nname, 0)
		if errors.Is(err, unix.EEXIST) {
			var a, b unix.Stat_t
			if unix.Fstatat(odir, oname, &a, unix.AT_SYMLINK_NOFOLLOW) == nil &&
				unix.Fstatat(ndir, nname, &b, unix.AT_SYMLINK_NOFOLLOW) == nil && a.Ino == b.Ino && a.Dev == b.Dev {
				return nil // linked before a redo
			}
		}
		return err
	})
}

func (a *Applier) rename(r *journal.Record) error {
	odir, oname, err := OpenParent(a.root, r.Path)
	if err != nil {
		return err
	}
	defer unix.Close(odir)
	return a.atParent(r.NewPath, func(ndir int, nname string) error {
		err := unix.Renameat2(odir, oname, ndir, nname, uint(r.Flags))
		if errors.Is(err, unix.ENOENT) && r.Flags&unix.RENAME_EXCHANGE == 0 {
			// Renamed before a redo: the source is gone, the target there.
			var st unix.Stat_t
			if unix.Fstatat(ndir, nname, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				return nil
			}
		}
		return err
	})
}

// setOwnerMode gives a new entry the owner and mode the record carries.
// An entry that already stood there (a redo) must be of the type the
// record made: chmod follows symbolic links, and one must never lead it
// out of the backing dir.
func (a *Applier) setOwnerMode(r *journal.Record) error {
	return a.atParent(r.Path, func(dir int, name string) error {
		var st unix.Stat_t
		if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if r.Mode != nil && st.Mode&unix.S_IFMT != *r.Mode&unix.S_IFMT {
			return fmt.Errorf("%q exists with another file type (mode %o, record says %o)", r.Path, st.Mode, *r.Mode)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return fmt.Errorf("%q is a symbolic link", r.Path)
		}
		if r.UID != nil && r.GID != nil {
			if err := unix.Fchownat(dir, name, int(*r.UID), int(*r.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
		}
		if r.Mode != nil {
			// After chown, which may clear set-ID bits.
			return unix.Fchmodat(dir, name, *r.Mode&0o7777, 0)
		}
		return nil
	})
}

func (a *Applier) setattr(r *journal.Record) error {
	return a.atParent(r.Path, func(dir int, name string) error {
		if r.UID != nil || r.GID != nil {
			uid, gid := -1, -1
			if r.UID != nil {
				uid = int(*r.UID)
			}
			if r.GID != nil {
				gid = int(*r.GID)
			}
			if err := unix.Fchownat(dir, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
		}
		if r.Mode != nil {
			var st unix.Stat_t
			if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
			if st.Mode&unix.S_IFMT != unix.S_IFLNK { // symlinks have no mode of their own
				if err := unix.Fchmodat(dir, name, *r.Mode&0o7777, 0); err != nil {
					return err
				}
			}
		}
		if r.Atime != nil || r.Mtime != nil {
			ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
			if r.Atime != nil {
				ts[0] = unix.NsecToTimespec(r.Atime.UnixNano())
			}
			if r.Mtime != nil {
				ts[1] = unix.NsecToTimespec(r.Mtime.UnixNano())
			}
			return unix.UtimesNanoAt(dir, name, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
		return nil
	})
}
