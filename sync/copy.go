package sync

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/sys/unix"
)

// CopyEntry copies the entry at volume path from, beneath the backing dir
// rootFD, to path to beneath it (which may lie in georep's own dir, where
// conflict copies go), replacing whatever is at to: a regular file's data
// (cloned where the file system can share blocks, copied in the kernel
// otherwise), a symbolic link's target, a device or FIFO, or a directory
// (with everything below it when recursive, else empty), each with its
// owner, mode, mtime and xattrs. The directories leading to to are made
// as needed (0700). Nothing is followed: both paths are resolved beneath
// the root without symbolic links. It reports false when from does not
// exist (sockets are not copied either).
func CopyEntry(rootFD int, from, to string, recursive bool, log *slog.Logger) (bool, error) {
	if to == "" || within(from, to) || within(to, from) && !strings.HasPrefix(to, HiddenDir+"/") {
		return false, fmt.Errorf("copy %q to %q: overlapping paths", from, to)
	}
	srcDir, srcName, err := openEntryParent(rootFD, from)
	if err != nil {
		return false, ignoreGone(err)
	}
	defer unix.Close(srcDir)
	e, err := entryOf(srcDir, srcName)
	if err != nil {
		return false, ignoreGone(err)
	}
	if e.Type() == typeSock {
		return false, nil
	}
	dstDir, dstName, err := makeParents(rootFD, to)
	if err != nil {
		return false, fmt.Errorf("copy %q: %w", from, err)
	}
	defer unix.Close(dstDir)
	if err := copyOne(srcDir, srcName, &e, dstDir, dstName, log); err != nil {
		return false, fmt.Errorf("copy %q to %q: %w", from, to, err)
	}
	if e.Type() == typeDir && recursive {
		fd, err := unix.Openat(srcDir, nonEmpty(srcName), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return false, fmt.Errorf("open %q: %w", from, err)
		}
		names, err := listNames(fd, from == "")
		unix.Close(fd)
		if err != nil {
			return false, fmt.Errorf("list %q: %w", from, err)
		}
		for _, n := range names {
			if _, err := CopyEntry(rootFD, joinPath(from, n), joinPath(to, n), true, log); err != nil {
				return false, err
			}
		}
		// Its entries changed its mtime.
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(e.Mtime)}
		unix.UtimesNanoAt(dstDir, dstName, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return true, nil
}

func ignoreGone(err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	return err
}

// openEntryParent is OpenParent, with the volume root itself as "" in
// the root.
func openEntryParent(rootFD int, p string) (int, string, error) {
	if p == "" {
		fd, err := unix.Dup(rootFD)
		return fd, "", err
	}
	return OpenParent(rootFD, p)
}

// makeParents makes the directories leading to p beneath rootFD (0700)
// and opens the last one.
func makeParents(rootFD int, p string) (int, string, error) {
	if err := CheckPath(p); err != nil || p == "" {
		return -1, "", fmt.Errorf("%w: cannot copy to %q", ErrBadPath, p)
	}
	fd, err := unix.Dup(rootFD)
	if err != nil {
		return -1, "", err
	}
	comps := strings.Split(p, "/")
	for _, name := range comps[:len(comps)-1] {
		if err := unix.Mkdirat(fd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			return -1, "", fmt.Errorf("make %q: %w", name, err)
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, "", fmt.Errorf("open %q: %w", name, err)
		}
		fd = next
	}
	return fd, comps[len(comps)-1], nil
}

// copyOne makes entry dstName of dstDir a copy of e, entry srcName of
// srcDir ("" for srcDir itself).
func copyOne(srcDir int, srcName string, e *Entry, dstDir int, dstName string, log *slog.Logger) error {
	var st unix.Stat_t
	exists := lstatAt(dstDir, dstName, &st) == nil
	if exists && (e.Type() != typeDir || st.Mode&unix.S_IFMT != unix.S_IFDIR) {
		if err := removeAt(dstDir, dstName); err != nil {
			return err
		}
		exists = false
	}
	mtime := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(e.Mtime)}
	switch e.Type() {
	case typeReg:
		return copyFile(srcDir, srcName, e, dstDir, dstName, log)
	case typeDir:
		if !exists {
			if err := unix.Mkdirat(dstDir, dstName, 0o700); err != nil {
				return err
			}
		}
		if err := applyMeta(dstDir, dstName, e, log); err != nil {
			return err
		}
	case typeLnk:
		if err := unix.Symlinkat(e.Target, dstDir, dstName); err != nil {
			return err
		}
		if err := unix.Fchownat(dstDir, dstName, int(e.UID), int(e.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	default: // FIFO, device
		if err := unix.Mknodat(dstDir, dstName, e.Mode, int(e.Rdev)); err != nil {
			return err
		}
		if err := applyMeta(dstDir, dstName, e, log); err != nil {
			return err
		}
	}
	return unix.UtimesNanoAt(dstDir, dstName, mtime, unix.AT_SYMLINK_NOFOLLOW)
}

// copyFile copies a regular file through a temporary name, so a copy is
// never seen half made.
func copyFile(srcDir int, srcName string, e *Entry, dstDir int, dstName string, log *slog.Logger) error {
	src, err := unix.Openat(srcDir, srcName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(src)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("no longer a regular file")
	}
	b := make([]byte, 8)
	rand.Read(b)
	tmp := ".copy-" + hex.EncodeToString(b)
	dst, err := unix.Openat(dstDir, tmp, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	err = unix.IoctlFileClone(dst, src)
	if err != nil {
		err = copyRange(src, dst, 0, st.Size)
	}
	if err == nil {
		e.Size = st.Size
		err = finishNew(dst, e, log)
	}
	if err == nil {
		err = unix.Fsync(dst)
	}
	unix.Close(dst)
	if err == nil {
		err = unix.Renameat(dstDir, tmp, dstDir, dstName)
	}
	if err != nil {
		unix.Unlinkat(dstDir, tmp, 0)
	}
	return err
}
