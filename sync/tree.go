package sync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Tree sync compares the primary's tree with the replica's and ships what
// differs: a full initial sync, and the comparison of single paths that a
// record could not be applied to or that the journal could not vouch for.
//
// The primary walks depth first, directories in name order. For each
// directory it sends its entries (type, mode, owner, size, mtime, link
// target, device, xattrs); the replica fixes metadata in place, creates
// what is missing, removes what is not listed, and answers with the files
// whose size or mtime differ, together with the SHA-256 of each of its
// blocks of that file, so only blocks that differ travel. A file is built
// beside the tree (in .georep/tmp) and renamed over its name, so a reader
// never sees it half written; hardlinks are linked, not copied.

// lstatAt stats name in directory dirfd without following a link.
func lstatAt(dirfd int, name string, st *unix.Stat_t) error {
	return unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
}

func mtimeNs(st *unix.Stat_t) int64 { return st.Mtim.Nano() }

// procPath names entry name of directory dirfd for calls that take a
// path (xattrs): the l-variants act on the entry itself.
func procPath(dirfd int, name string) string {
	if name == "" {
		return fmt.Sprintf("/proc/self/fd/%d", dirfd)
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name)
}

// xattrAt names entry name of dirfd ("" for dirfd itself) for the xattr
// calls: the entry itself, never what a symbolic link entry points to.
// For dirfd itself the path is the descriptor's magic link, which the
// calls must follow (the l-variants would act on the link).
type xattrAt struct {
	path   string
	follow bool
}

func xattrsOf(dirfd int, name string) xattrAt {
	return xattrAt{procPath(dirfd, name), name == ""}
}

func (x xattrAt) list(buf []byte) (int, error) {
	if x.follow {
		return unix.Listxattr(x.path, buf)
	}
	return unix.Llistxattr(x.path, buf)
}

func (x xattrAt) get(name string, buf []byte) (int, error) {
	if x.follow {
		return unix.Getxattr(x.path, name, buf)
	}
	return unix.Lgetxattr(x.path, name, buf)
}

func (x xattrAt) set(name string, v []byte) error {
	if x.follow {
		return unix.Setxattr(x.path, name, v, 0)
	}
	return unix.Lsetxattr(x.path, name, v, 0)
}

func (x xattrAt) remove(name string) error {
	if x.follow {
		return unix.Removexattr(x.path, name)
	}
	return unix.Lremovexattr(x.path, name)
}

// entryOf describes entry name of dirfd ("" for dirfd itself).
func entryOf(dirfd int, name string) (Entry, error) {
	var st unix.Stat_t
	var err error
	if name == "" {
		err = unix.Fstat(dirfd, &st)
	} else {
		err = lstatAt(dirfd, name, &st)
	}
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Name: name, Mode: st.Mode, UID: st.Uid, GID: st.Gid, Mtime: mtimeNs(&st), Ino: st.Ino, Nlink: uint32(st.Nlink)}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Size = st.Size
	case unix.S_IFLNK:
		buf := make([]byte, maxPath+1)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return Entry{}, err
		}
		e.Target = string(buf[:n])
	case unix.S_IFCHR, unix.S_IFBLK:
		e.Rdev = st.Rdev
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if e.Xattrs, err = readXattrs(xattrsOf(dirfd, name)); err != nil {
			return Entry{}, err
		}
	}
	return e, nil
}

// readXattrs reads every extended attribute of the entry x.
func readXattrs(x xattrAt) (map[string][]byte, error) {
	buf := make([]byte, 4096)
	n, err := x.list(buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = x.list(nil); err == nil {
			buf = make([]byte, n)
			n, err = x.list(buf)
		}
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil || n == 0 {
		return nil, err
	}
	out := map[string][]byte{}
	for name := range strings.SplitSeq(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		k, err := x.get(name, v)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read xattr %s: %w", name, err)
		}
		out[name] = v[:k]
	}
	return out, nil
}

// listNames lists directory fd's names in order, without georep's own dir
// at the volume root.
func listNames(fd int, root bool) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var names []string
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.ReadDirent(dup, buf)
		if err != nil {
			unix.Close(dup)
			return nil, err
		}
		if n == 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	unix.Close(dup)
	if root {
		names = slices.DeleteFunc(names, func(s string) bool { return s == HiddenDir })
	}
	slices.Sort(names)
	return names, nil
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// normalizeRoots sorts paths and drops those inside another.
func normalizeRoots(ps []string) []string {
	ps = slices.Clone(ps)
	slices.Sort(ps)
	ps = slices.Compact(ps)
	out := ps[:0]
	for _, p := range ps {
		if len(out) > 0 && within(p, out[len(out)-1]) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

// treeSender is the primary's side of a tree sync.
type treeSender struct {
	root  int
	c     *Conn
	buf   []byte
	stats *TreeProgress
	// names, if set, collects every name of each file with several
	// (hardlinks), so a later round can compare all of them.
	names linkNames
}

// linkNames maps the inode of a file with several names to the names a
// walk saw it under.
type linkNames map[uint64][]string

func (l linkNames) note(dir string, e *Entry) {
	if l == nil || e.Type() != typeReg || e.Nlink < 2 {
		return
	}
	p := joinPath(dir, e.Name)
	if !slices.Contains(l[e.Ino], p) {
		l[e.Ino] = append(l[e.Ino], p)
	}
}

// dirChunk bounds the entries of one Dir frame.
const dirChunk = 2000

// syncRoot compares the tree at p: the chain of directories leading to
// it, one entry each, then everything below it.
func (t *treeSender) syncRoot(ctx context.Context, p string) error {
	if p == "" {
		return t.walkDir(ctx, "", t.root)
	}
	fd, err := unix.Dup(t.root)
	if err != nil {
		return err
	}
	var chain []string // directories whose entry changed, for DirEnd
	defer func() { unix.Close(fd) }()
	dir := ""
	comps := strings.Split(p, "/")
	for k, name := range comps {
		self, err := entryOf(fd, "")
		if err != nil {
			return fmt.Errorf("stat %q: %w", dir, err)
		}
		self.Name = ""
		d := Dir{Path: dir, Self: &self}
		e, err := entryOf(fd, name)
		last := k == len(comps)-1
		switch {
		case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
			d.Gone = []string{name}
		case err != nil:
			return fmt.Errorf("stat %q: %w", joinPath(dir, name), err)
		default:
			d.Entries = []Entry{e}
			t.names.note(dir, &e)
		}
		if dir == "" && name == HiddenDir {
			return nil
		}
		chain = append(chain, dir)
		if err := t.sendDir(ctx, fd, &d); err != nil {
			return err
		}
		if d.Gone != nil || e.Type() != typeDir {
			break
		}
		child, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				break // gone meanwhile: a later round compares it
			}
			return fmt.Errorf("open %q: %w", joinPath(dir, name), err)
		}
		if last {
			err = t.walkDir(ctx, joinPath(dir, name), child)
			unix.Close(child)
			if err != nil {
				return err
			}
			break
		}
		unix.Close(fd)
		fd, dir = child, joinPath(dir, name)
	}
	// Parents' mtimes, deepest first, once their entries are settled.
	for i := len(chain) - 1; i >= 0; i-- {
		var st unix.Stat_t
		if err := unix.Fstatat(t.root, nonEmpty(chain[i]), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		if err := t.c.Send(TDirEnd, &DirEnd{Path: chain[i], Mtime: mtimeNs(&st)}); err != nil {
			return err
		}
	}
	return nil
}

// nonEmpty turns the root path "" into "." for *at calls.
func nonEmpty(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// walkDir sends directory path (open as fd) and everything below it.
func (t *treeSender) walkDir(ctx context.Context, path string, fd int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := listNames(fd, path == "")
	if err != nil {
		return fmt.Errorf("list %q: %w", path, err)
	}
	self, err := entryOf(fd, "")
	if err != nil {
		return fmt.Errorf("stat %q: %w", path, err)
	}
	var subdirs []string
	for i := 0; i == 0 || i < len(names); i += dirChunk {
		chunk := names[i:min(i+dirChunk, len(names))]
		d := Dir{Path: path, Self: &self, Full: true, More: i+dirChunk < len(names)}
		for _, name := range chunk {
			e, err := entryOf(fd, name)
			if errors.Is(err, unix.ENOENT) {
				continue // gone meanwhile; a later round compares it
			}
			if err != nil {
				return fmt.Errorf("stat %q: %w", joinPath(path, name), err)
			}
			if e.Type() == typeDir {
				subdirs = append(subdirs, name)
			}
			d.Entries = append(d.Entries, e)
			t.names.note(path, &e)
		}
		if err := t.sendDir(ctx, fd, &d); err != nil {
			return err
		}
	}
	t.stats.Dirs++
	for _, name := range subdirs {
		child, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open %q: %w", joinPath(path, name), err)
		}
		err = t.walkDir(ctx, joinPath(path, name), child)
		unix.Close(child)
		if err != nil {
			return err
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %q: %w", path, err)
	}
	return t.c.Send(TDirEnd, &DirEnd{Path: path, Mtime: mtimeNs(&st)})
}

// sendDir sends one Dir frame, then the files the replica wants.
func (t *treeSender) sendDir(ctx context.Context, fd int, d *Dir) error {
	if err := t.c.Send(TDir, d); err != nil {
		return err
	}
	if err := t.c.Flush(); err != nil {
		return err
	}
	var w Wants
	if err := t.c.Expect(TWants, &w); err != nil {
		return err
	}
	inos := make(map[string]uint64, len(d.Entries))
	for _, e := range d.Entries {
		inos[e.Name] = e.Ino
	}
	for _, want := range w.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := t.sendFile(fd, d.Path, &want, inos[want.Name]); err != nil {
			return err
		}
	}
	return nil
}

// sendFile sends the whole of file want.Name of directory dir (open as
// fd) as Data, Hole and Keep ranges, if it still is the inode ino the
// entry described: a name that meanwhile holds another file (renamed over,
// exchanged) is sent as missing, so its data never lands on a replica of
// the other file (a later round compares it).
func (t *treeSender) sendFile(fd int, dir string, want *Want, ino uint64) error {
	p := joinPath(dir, want.Name)
	if err := t.c.Send(TFile, &FileHeader{Path: p}); err != nil {
		return err
	}
	f, err := unix.Openat(fd, want.Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	var st unix.Stat_t
	if err == nil {
		if err = unix.Fstat(f, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
			err = fmt.Errorf("no longer a regular file")
		} else if err == nil && ino != 0 && st.Ino != ino {
			err = fmt.Errorf("another file now")
		}
		if err != nil {
			unix.Close(f)
		}
	}
	if err != nil {
		// Gone or replaced meanwhile: a later round compares it.
		return t.c.Send(TFileEnd, &FileEnd{Missing: true})
	}
	defer unix.Close(f)
	if cap(t.buf) < blockSize {
		t.buf = make([]byte, blockSize)
	}
	pending := [2]int64{} // a run of Keep or Hole not sent yet
	var pendingType FrameType
	flushPending := func() error {
		if pending[1] == 0 {
			return nil
		}
		err := t.c.SendRange(pendingType, pending[0], pending[1])
		pending = [2]int64{}
		return err
	}
	addRange := func(typ FrameType, off, n int64) error {
		if pendingType == typ && pending[1] > 0 && pending[0]+pending[1] == off {
			pending[1] += n
			return nil
		}
		if err := flushPending(); err != nil {
			return err
		}
		pendingType, pending = typ, [2]int64{off, n}
		return nil
	}
	size := st.Size
	nextData := int64(-1) // the next offset holding data, from SEEK_DATA
	for off, i := int64(0), 0; off < size; off, i = off+blockSize, i+1 {
		n := min(blockSize, size-off)
		if nextData < off {
			nextData, err = unix.Seek(f, off, unix.SEEK_DATA)
			if err != nil {
				nextData = size // ENXIO: only a hole up to the end
			}
		}
		if nextData >= off+n {
			if err := addRange(THole, off, n); err != nil {
				return err
			}
			continue
		}
		k, err := io.ReadFull(io.NewSectionReader(fdReaderAt(f), off, n), t.buf[:n])
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %q: %w", p, err)
		}
		block := t.buf[:k]
		if i < len(want.Blocks) {
			h := sha256.Sum256(block)
			if bytes.Equal(h[:], want.Blocks[i]) && int64(k) == n {
				if err := addRange(TKeep, off, n); err != nil {
					return err
				}
				continue
			}
		}
		if err := flushPending(); err != nil {
			return err
		}
		if err := t.c.SendData(off, block); err != nil {
			return err
		}
		t.stats.Bytes += int64(k)
	}
	if err := flushPending(); err != nil {
		return err
	}
	t.stats.Files++
	return t.c.Send(TFileEnd, &FileEnd{Size: size, Mtime: mtimeNs(&st)})
}

// fdReaderAt reads a descriptor with pread.
type fdReaderAt int

func (fd fdReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := unix.Pread(int(fd), p, off)
	if err != nil {
		return 0, err
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}
