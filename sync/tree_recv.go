package sync

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/journal"
)

// treeReceiver is the replica's side of one tree sync.
type treeReceiver struct {
	r        *Receiver
	c        *Conn
	checksum bool
	tmp      int // .georep/tmp in the backing dir
	tmpSeq   int
	// links maps a primary inode with several names to the path this
	// sync gave it first, so later names become hardlinks to it.
	links map[uint64]string
	// seen collects the names of a directory sent in several chunks.
	seen     map[string]bool
	seenPath string
	changed  []*journal.Record
	// pending are hardlinked files to note in the receiver's link map
	// once their directory is done.
	pending []linkNote
	// missing are files the primary could not send (changed meanwhile).
	missing map[string]bool
}

type linkNote struct {
	ino  uint64
	path string
}

// maxWantBlocks bounds the block hashes sent for one file (12.5 GiB);
// a bigger file that differs is sent whole.
const maxWantBlocks = 100_000

// receiveTree runs a tree sync the primary started with tb.
func (r *Receiver) receiveTree(ctx context.Context, c *Conn, tb *TreeBegin) error {
	tmp, err := r.openTmp()
	if err != nil {
		return err
	}
	defer unix.Close(tmp)
	t := &treeReceiver{r: r, c: c, checksum: tb.Checksum, tmp: tmp, links: map[uint64]string{}, missing: map[string]bool{}}
	r.mu.Lock()
	st := r.state
	r.mu.Unlock()
	if !st.Full && !st.Unsettled {
		// From here until the final end, paths may hold a state newer
		// than the cursor: a later session must know.
		st.Unsettled = true
		if err := r.commit(st, nil); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.tree = TreeProgress{Running: true}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.tree.Running = false
		r.mu.Unlock()
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := c.Read()
		if err != nil {
			return fmt.Errorf("tree sync: %w", noEOF(err))
		}
		switch f.Type {
		case TDir:
			var d Dir
			if err := DecodeJSON(f, &d); err != nil {
				return err
			}
			if err := t.dir(&d); err != nil {
				return fmt.Errorf("tree sync of %q: %w", d.Path, err)
			}
		case TDirEnd:
			var de DirEnd
			if err := DecodeJSON(f, &de); err != nil {
				return err
			}
			r.setMtime(de.Path, de.Mtime)
		case TTreeEnd:
			var te TreeEnd
			if err := DecodeJSON(f, &te); err != nil {
				return err
			}
			return t.end(tb, &te)
		default:
			return protoErr("unexpected %s frame in a tree sync", f.Type)
		}
	}
}

func (t *treeReceiver) end(tb *TreeBegin, te *TreeEnd) error {
	r := t.r
	if err := unix.Syncfs(r.root); err != nil {
		return fmt.Errorf("sync backing dir: %w", err)
	}
	r.mu.Lock()
	st := r.state
	r.mu.Unlock()
	if te.Final {
		if tb.Full || st.Full {
			// A new copy: what was received before describes nothing.
			st.RLFrom = te.Seq
		}
		st.Cursor, st.Full, st.Repair, st.Unsettled = te.Seq, false, nil, false
		st.Applied = time.Now()
	}
	if err := r.commit(st, nil); err != nil {
		return err
	}
	if err := t.c.Send(TAck, &Ack{Seq: st.Cursor}); err != nil {
		return err
	}
	return t.c.Flush()
}

// openTmp opens (creating) .georep/tmp in the backing dir and empties it.
func (r *Receiver) openTmp() (int, error) {
	if err := unix.Mkdirat(r.root, HiddenDir, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create %s: %w", HiddenDir, err)
	}
	if err := unix.Mkdirat(r.root, HiddenDir+"/tmp", 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create %s/tmp: %w", HiddenDir, err)
	}
	fd, err := unix.Openat(r.root, HiddenDir+"/tmp", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s/tmp: %w", HiddenDir, err)
	}
	names, err := listNames(fd, false)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	for _, n := range names {
		removeAt(fd, n)
	}
	return fd, nil
}

// removeAt removes entry name of dirfd, and everything below it, never
// following a symbolic link.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	names, err := listNames(fd, false)
	if err == nil {
		for _, n := range names {
			if err = removeAt(fd, n); err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// removePath removes whatever is at p.
func (r *Receiver) removePath(p string) error {
	dir, name, err := OpenParent(r.root, p)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	return removeAt(dir, name)
}

// dir applies one Dir frame and answers with the files it wants.
func (t *treeReceiver) dir(d *Dir) error {
	r := t.r
	if d.Self == nil {
		if d.Path == "" {
			return protoErr("the volume root is missing")
		}
		t.changed = append(t.changed, &journal.Record{Op: journal.OpUnlink, Path: d.Path})
		if err := r.removePath(d.Path); err != nil {
			return err
		}
		return t.sendWants(nil)
	}
	fd, err := t.ensureDir(d.Path, d.Self)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := applyMeta(fd, "", d.Self, r.log); err != nil {
		return err
	}
	var wants []Want
	wanted := map[string]*Entry{}
	var links []*Entry // hardlinks to files this directory may still be receiving
	for i := range d.Entries {
		e := &d.Entries[i]
		if e.Type() == typeReg && e.Nlink > 1 {
			if _, ok := t.links[e.Ino]; ok {
				links = append(links, e)
				continue
			}
		}
		w, err := t.entry(fd, d.Path, e)
		if err != nil {
			return fmt.Errorf("%q: %w", joinPath(d.Path, e.Name), err)
		}
		if w != nil {
			wants = append(wants, *w)
			wanted[e.Name] = e
		}
	}
	for _, name := range d.Gone {
		t.remove(fd, d.Path, name)
	}
	if d.Full {
		if t.seenPath != d.Path || t.seen == nil {
			t.seen, t.seenPath = map[string]bool{}, d.Path
		}
		for _, e := range d.Entries {
			t.seen[e.Name] = true
		}
		if !d.More {
			names, err := listNames(fd, d.Path == "")
			if err != nil {
				return err
			}
			for _, n := range names {
				if !t.seen[n] {
					t.remove(fd, d.Path, n)
				}
			}
			t.seen = nil
		}
	}
	if err := t.sendWants(wants); err != nil {
		return err
	}
	for _, w := range wants {
		if err := t.receiveFile(fd, d.Path, wanted[w.Name]); err != nil {
			return err
		}
	}
	for _, e := range links {
		if _, err := t.entry(fd, d.Path, e); err != nil {
			return fmt.Errorf("%q: %w", joinPath(d.Path, e.Name), err)
		}
	}
	for _, n := range t.pending {
		if !t.missing[n.path] {
			r.noteLink(n.ino, n.path)
		}
	}
	t.pending = t.pending[:0]
	r.sink.Invalidate(t.changed)
	t.changed = t.changed[:0]
	r.mu.Lock()
	r.tree.Dirs++
	r.mu.Unlock()
	return nil
}

func (t *treeReceiver) sendWants(w []Want) error {
	if err := t.c.Send(TWants, &Wants{Files: w}); err != nil {
		return err
	}
	return t.c.Flush()
}

func (t *treeReceiver) remove(fd int, dir, name string) {
	p := joinPath(dir, name)
	t.changed = append(t.changed, &journal.Record{Op: journal.OpUnlink, Path: p})
	if err := removeAt(fd, name); err != nil {
		t.r.log.Warn("tree sync: cannot remove", "path", p, "err", err)
	}
}

// ensureDir makes p a directory and opens it.
func (t *treeReceiver) ensureDir(p string, self *Entry) (int, error) {
	if p == "" {
		return unix.Dup(t.r.root)
	}
	fd, err := OpenBeneath(t.r.root, p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err == nil {
		return fd, nil
	}
	parent, name, perr := OpenParent(t.r.root, p)
	if perr != nil {
		return -1, fmt.Errorf("open parent: %w", perr)
	}
	defer unix.Close(parent)
	if err := removeAt(parent, name); err != nil {
		return -1, err
	}
	if err := unix.Mkdirat(parent, name, self.Mode&0o7777); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	t.changed = append(t.changed, &journal.Record{Op: journal.OpMkdir, Path: p})
	return unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// entry brings entry e of directory dir (open as fd) in line, or returns
// the Want for its data.
func (t *treeReceiver) entry(fd int, dir string, e *Entry) (*Want, error) {
	p := joinPath(dir, e.Name)
	var st unix.Stat_t
	exists := lstatAt(fd, e.Name, &st) == nil
	if exists && st.Mode&unix.S_IFMT != e.Type() {
		if err := removeAt(fd, e.Name); err != nil {
			return nil, err
		}
		exists = false
	}
	change := func(op journal.Op) { t.changed = append(t.changed, &journal.Record{Op: op, Path: p}) }
	switch e.Type() {
	case typeDir:
		if !exists {
			if err := unix.Mkdirat(fd, e.Name, e.Mode&0o7777); err != nil {
				return nil, err
			}
			change(journal.OpMkdir)
		}
		return nil, applyMeta(fd, e.Name, e, t.r.log)
	case typeLnk:
		if exists {
			buf := make([]byte, maxPath+1)
			n, err := unix.Readlinkat(fd, e.Name, buf)
			if err != nil || string(buf[:n]) != e.Target {
				if err := unix.Unlinkat(fd, e.Name, 0); err != nil {
					return nil, err
				}
				exists = false
			}
		}
		if !exists {
			if err := unix.Symlinkat(e.Target, fd, e.Name); err != nil {
				return nil, err
			}
			change(journal.OpSymlink)
		}
		if err := unix.Fchownat(fd, e.Name, int(e.UID), int(e.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, err
		}
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(e.Mtime)}
		return nil, unix.UtimesNanoAt(fd, e.Name, ts, unix.AT_SYMLINK_NOFOLLOW)
	case typeFifo, typeSock, typeChr, typeBlk:
		if exists && st.Rdev != e.Rdev {
			if err := unix.Unlinkat(fd, e.Name, 0); err != nil {
				return nil, err
			}
			exists = false
		}
		if !exists {
			if err := unix.Mknodat(fd, e.Name, e.Mode, int(e.Rdev)); err != nil {
				return nil, err
			}
			change(journal.OpMknod)
		}
		if err := applyMeta(fd, e.Name, e, t.r.log); err != nil {
			return nil, err
		}
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(e.Mtime)}
		return nil, unix.UtimesNanoAt(fd, e.Name, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	// A regular file.
	if e.Nlink > 1 {
		if first, ok := t.links[e.Ino]; ok {
			return nil, t.link(fd, dir, e, first, exists, &st)
		}
		// A name of a file this replica already holds under another
		// name (an earlier sync or a link record made it): link to it
		// first, then bring the contents in line, in place.
		if first, ok := t.r.linkedPath(e.Ino); ok && first != p {
			if err := t.link(fd, dir, e, first, exists, &st); err != nil {
				return nil, err
			}
			exists = lstatAt(fd, e.Name, &st) == nil
		}
		t.links[e.Ino] = p
		t.pending = append(t.pending, linkNote{e.Ino, p})
	}
	// A name that shares its inode here but not on the primary is given
	// an inode of its own (wanted, built aside, renamed over it).
	shared := exists && e.Nlink < 2 && st.Nlink > 1
	// Checksum mode wants even files that look unchanged, with their
	// block hashes: only blocks that differ travel.
	if exists && st.Size == e.Size && mtimeNs(&st) == e.Mtime && !t.checksum && !shared {
		return nil, applyMeta(fd, e.Name, e, t.r.log)
	}
	w := &Want{Name: e.Name}
	if exists && st.Size/blockSize < maxWantBlocks {
		w.Blocks = blockHashes(fd, e.Name)
	}
	return w, nil
}

// link makes entry e a hardlink to first, the path its inode got earlier
// in this sync.
func (t *treeReceiver) link(fd int, dir string, e *Entry, first string, exists bool, st *unix.Stat_t) error {
	var fst unix.Stat_t
	if err := t.r.lstat(first, &fst); err != nil {
		return err
	}
	if exists && st.Ino == fst.Ino {
		return nil
	}
	fdir, fname, err := OpenParent(t.r.root, first)
	if err != nil {
		return err
	}
	defer unix.Close(fdir)
	tmp := t.tmpName()
	if err := unix.Linkat(fdir, fname, t.tmp, tmp, 0); err != nil {
		return err
	}
	if err := unix.Renameat(t.tmp, tmp, fd, e.Name); err != nil {
		unix.Unlinkat(t.tmp, tmp, 0)
		return err
	}
	t.changed = append(t.changed, &journal.Record{Op: journal.OpUnlink, Path: joinPath(dir, e.Name)})
	return nil
}

func (t *treeReceiver) tmpName() string {
	t.tmpSeq++
	return "t" + strconv.Itoa(t.tmpSeq)
}

// blockHashes hashes each block of file name of dirfd; nil if unreadable.
func blockHashes(dirfd int, name string) [][]byte {
	f, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(f)
	buf := make([]byte, blockSize)
	var out [][]byte
	for off := int64(0); ; off += blockSize {
		n, err := io.ReadFull(io.NewSectionReader(fdReaderAt(f), off, blockSize), buf)
		if n > 0 {
			h := sha256.Sum256(buf[:n])
			out = append(out, h[:])
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return out
			}
			return nil
		}
	}
}

// receiveFile builds file e of directory dir (open as fd) from the
// frames the primary sends, beside the tree, and renames it into place.
func (t *treeReceiver) receiveFile(fd int, dir string, e *Entry) error {
	p := joinPath(dir, e.Name)
	var h FileHeader
	if err := t.c.Expect(TFile, &h); err != nil {
		return err
	}
	if h.Path != p {
		return protoErr("file %q sent for %q", h.Path, p)
	}
	old, err := unix.Openat(fd, e.Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		old = -1
	} else {
		defer unix.Close(old)
	}
	tmp := t.tmpName()
	nf, err := unix.Openat(t.tmp, tmp, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	ok := false
	defer func() {
		unix.Close(nf)
		if !ok {
			unix.Unlinkat(t.tmp, tmp, 0)
		}
	}()
	for {
		f, err := t.c.Read()
		if err != nil {
			return noEOF(err)
		}
		switch f.Type {
		case TData:
			off, data, err := DecodeData(f)
			if err != nil {
				return err
			}
			if _, err := unix.Pwrite(nf, data, off); err != nil {
				return fmt.Errorf("write %q: %w", p, err)
			}
			t.r.mu.Lock()
			t.r.tree.Bytes += int64(len(data))
			t.r.mu.Unlock()
		case THole:
			if _, _, err := DecodeRange(f); err != nil {
				return err
			}
		case TKeep:
			off, n, err := DecodeRange(f)
			if err != nil {
				return err
			}
			if old < 0 {
				return fmt.Errorf("keep of %q, which has no old version", p)
			}
			if err := copyRange(old, nf, off, n); err != nil {
				return fmt.Errorf("keep %q [%d, +%d): %w", p, off, n, err)
			}
		case TFileEnd:
			var fe FileEnd
			if err := DecodeJSON(f, &fe); err != nil {
				return err
			}
			if fe.Missing {
				// Changed on the primary meanwhile; a later round
				// compares it. What stands here is no copy of it.
				t.missing[p] = true
				delete(t.links, e.Ino)
				return nil
			}
			if err := unix.Ftruncate(nf, fe.Size); err != nil {
				return err
			}
			e.Mtime = fe.Mtime
			var ost unix.Stat_t
			if old >= 0 && e.Nlink > 1 && unix.Fstat(old, &ost) == nil && ost.Nlink > 1 && t.r.replicaOf(e.Ino, ost.Ino) {
				// The file has other names here, as on the primary: a
				// new inode renamed over this name would split them.
				// (Only a local inode known to copy this very file is
				// written over; any other is replaced.)
				if err := t.overwrite(old, nf, fe.Size, e); err != nil {
					return fmt.Errorf("%q: %w", p, err)
				}
				t.changed = append(t.changed, &journal.Record{Op: journal.OpWrite, Path: p})
				t.r.mu.Lock()
				t.r.tree.Files++
				t.r.mu.Unlock()
				return nil // the temporary file goes
			}
			if err := finishNew(nf, e, t.r.log); err != nil {
				return fmt.Errorf("%q: %w", p, err)
			}
			if err := unix.Renameat(t.tmp, tmp, fd, e.Name); err != nil {
				return fmt.Errorf("rename into place %q: %w", p, err)
			}
			ok = true
			t.changed = append(t.changed, &journal.Record{Op: journal.OpUnlink, Path: p})
			t.r.mu.Lock()
			t.r.tree.Files++
			t.r.mu.Unlock()
			return nil
		default:
			return protoErr("unexpected %s frame in file %q", f.Type, p)
		}
	}
}

// overwrite copies the file built aside (src) into the existing inode of
// a hardlinked file, with reads through the mount held off meanwhile, so
// every name of it shows the new contents and none shows them half
// written.
func (t *treeReceiver) overwrite(oldRO, src int, size int64, e *Entry) error {
	dst, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", oldRO), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dst)
	t.r.sink.BlockReads()
	defer t.r.sink.UnblockReads()
	if err := unix.Ftruncate(dst, size); err != nil {
		return err
	}
	if err := copyRange(src, dst, 0, size); err != nil {
		return err
	}
	if err := applyMeta(dst, "", e, t.r.log); err != nil {
		return err
	}
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(e.Mtime)}
	return unix.UtimesNanoAt(dst, "", ts, unix.AT_EMPTY_PATH)
}

// finishNew gives a file just built (owned by the daemon, mode 0600, no
// xattrs) e's owner, mode, xattrs and mtime, through its descriptor.
func finishNew(fd int, e *Entry, log *slog.Logger) error {
	if e.UID != uint32(os.Geteuid()) || e.GID != uint32(os.Getegid()) {
		if err := unix.Fchown(fd, int(e.UID), int(e.GID)); err != nil {
			return err
		}
	}
	// After chown, which may clear set-ID bits.
	if err := unix.Fchmod(fd, e.Mode&0o7777); err != nil {
		return err
	}
	for k, v := range e.Xattrs {
		if err := unix.Fsetxattr(fd, k, v, 0); err != nil {
			log.Warn("cannot set xattr", "name", k, "err", err)
		}
	}
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(e.Mtime)}
	return unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
}

// copyRange copies [off, off+n) of src to the same offset of dst.
func copyRange(src, dst int, off, n int64) error {
	for n > 0 {
		so, do := off, off
		k, err := unix.CopyFileRange(src, &so, dst, &do, int(min(n, 1<<30)), 0)
		if err != nil {
			return err
		}
		if k == 0 {
			return io.ErrUnexpectedEOF
		}
		off, n = off+int64(k), n-int64(k)
	}
	return nil
}

// applyMeta gives entry name of dirfd ("" for dirfd itself) e's owner,
// mode and xattrs.
func applyMeta(dirfd int, name string, e *Entry, log *slog.Logger) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	target := name
	if name == "" {
		flags, target = unix.AT_EMPTY_PATH, ""
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, target, &st, flags); err != nil {
		return err
	}
	if st.Uid != e.UID || st.Gid != e.GID {
		if err := unix.Fchownat(dirfd, target, int(e.UID), int(e.GID), flags); err != nil {
			return err
		}
	}
	if st.Mode&0o7777 != e.Mode&0o7777 || st.Uid != e.UID || st.Gid != e.GID {
		// After chown, which may clear set-ID bits. Never a symbolic
		// link here (chmod would follow it).
		if err := unix.Fchmodat(unix.AT_FDCWD, procPath(dirfd, name), e.Mode&0o7777, 0); err != nil {
			return err
		}
	}
	x := xattrsOf(dirfd, name)
	have, err := readXattrs(x)
	if err != nil {
		return err
	}
	if maps.EqualFunc(have, e.Xattrs, func(a, b []byte) bool { return string(a) == string(b) }) {
		return nil
	}
	for k := range have {
		if _, ok := e.Xattrs[k]; !ok {
			if err := x.remove(k); err != nil && !errors.Is(err, unix.ENODATA) {
				log.Warn("cannot remove xattr", "name", k, "err", err)
			}
		}
	}
	for k, v := range e.Xattrs {
		if string(have[k]) == string(v) && have[k] != nil {
			continue
		}
		if err := x.set(k, v); err != nil {
			log.Warn("cannot set xattr", "name", k, "err", err)
		}
	}
	return nil
}
