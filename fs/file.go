package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/journal"
)

// file is an open file of the mount. It forwards to a LoopbackFile only
// the calls listed here; in particular it offers no PassthroughFd (kernel
// passthrough would send writes around the journal) and no Writev (every
// write arrives through Write).
type file struct {
	lf   *gofs.LoopbackFile
	node *Node
}

var (
	_ = (gofs.FileReader)((*file)(nil))
	_ = (gofs.FileWriter)((*file)(nil))
	_ = (gofs.FileFlusher)((*file)(nil))
	_ = (gofs.FileFsyncer)((*file)(nil))
	_ = (gofs.FileReleaser)((*file)(nil))
	_ = (gofs.FileGetattrer)((*file)(nil))
	_ = (gofs.FileLseeker)((*file)(nil))
	_ = (gofs.FileGetlker)((*file)(nil))
	_ = (gofs.FileSetlker)((*file)(nil))
	_ = (gofs.FileSetlkwer)((*file)(nil))
	_ = (gofs.FileAllocater)((*file)(nil))
	_ = (gofs.FileIoctler)((*file)(nil))
)

func (n *Node) wrapFile(ch *gofs.Inode, fh gofs.FileHandle) gofs.FileHandle {
	return ch.Operations().(*Node).newFile(fh)
}

// newFile wraps an open LoopbackFile of the node and registers it.
func (n *Node) newFile(fh gofs.FileHandle) *file {
	f := &file{lf: fh.(*gofs.LoopbackFile), node: n}
	n.hmu.Lock()
	if n.handles == nil {
		n.handles = map[*file]struct{}{}
	}
	n.handles[f] = struct{}{}
	n.hmu.Unlock()
	return f
}

// anyFile returns one of the node's open files, for a call
// that came without a file handle on a node no name reaches.
func (n *Node) anyFile() *file {
	n.hmu.Lock()
	defer n.hmu.Unlock()
	for f := range n.handles {
		return f
	}
	return nil
}

var _ = (gofs.NodeOpener)((*Node)(nil))

// Open opens the file. In read-only mode an open for writing fails with
// EROFS, as on a read-only mount. O_TRUNC of a non-empty file is journaled
// as a truncate to 0.
func (n *Node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	writing := flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
	if writing && n.vol.ReadOnly() {
		return nil, 0, syscall.EROFS
	}
	if flags&syscall.O_TRUNC == 0 {
		release := n.vol.reading()
		fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
		release()
		if errno != 0 {
			return nil, 0, errno
		}
		if n.vol.ReadOnly() {
			// Every read of a secondary's file passes the read gate,
			// never the page cache: no batch is seen half applied.
			fl |= fuse.FOPEN_DIRECT_IO
		}
		return n.newFile(fh), fl, 0
	}
	release, p, named, errno := n.beginPath(ctx, "")
	if errno != 0 {
		return nil, 0, errno
	}
	defer release()
	n.wmu.Lock()
	defer n.wmu.Unlock()
	if err := n.closeSessionLocked(); err != nil {
		return nil, 0, syscall.EIO
	}
	var fh gofs.FileHandle
	var fl uint32
	zero := uint64(0)
	errno = n.journaled(journal.OpTruncate, selfPaths(p, named), func() (*journal.Record, syscall.Errno) {
		var errno syscall.Errno
		fh, fl, errno = n.LoopbackNode.Open(ctx, flags)
		return &journal.Record{Op: journal.OpTruncate, Path: p, Ino: n.ino(), Size: &zero}, errno
	})
	if errno != 0 {
		if fh != nil {
			fh.(gofs.FileReleaser).Release(ctx)
		}
		return nil, 0, errno
	}
	return n.newFile(fh), fl, 0
}

// Read reads from the backing file: spliced, with no copy, on a writable
// mount; copied into buf under the read gate on a read-only one (a
// splice would read after the gate is released).
func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if !f.node.vol.ReadOnly() {
		return f.lf.Read(ctx, buf, off)
	}
	defer f.node.vol.reading()()
	n, err := syscall.Pread(f.fd(), buf, off)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	return fuse.ReadResultData(buf[:n]), 0
}

// Write writes data at off. The first write of a clean file journals an
// intent record before the data reaches the backing file; later writes
// only add their range to the open session.
func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	var written uint32
	errno := f.mutateData(ctx, off, int64(len(data)), func() syscall.Errno {
		var errno syscall.Errno
		written, errno = f.lf.Write(ctx, data, off)
		return errno
	})
	return written, errno
}

// mutateData runs a data mutation of [off, off+n) of the file under its
// write session.
func (f *file) mutateData(ctx context.Context, off, n int64, run func() syscall.Errno) syscall.Errno {
	nd := f.node
	release, errno := nd.begin(ctx)
	if errno != 0 {
		return errno
	}
	defer release()
	nd.wmu.Lock()
	defer nd.wmu.Unlock()
	if err := nd.noteWriteLocked(off, n); err != nil {
		nd.vol.log.Error("journal write intent failed; refusing the write", "ino", nd.ino(), "err", err)
		return syscall.EIO
	}
	return run()
}

// noteWriteLocked adds [off, off+n) to the node's write session, opening
// it (one durable record) if the file is clean. nd.wmu and the namespace
// lock must be held.
func (n *Node) noteWriteLocked(off, length int64) error {
	if n.sess != nil {
		n.sess.ranges = journal.AddRange(n.sess.ranges, off, length)
		return nil
	}
	p, errno := n.path()
	if errno != 0 {
		return nil // unlinked while open: no name to replicate
	}
	seq, err := n.vol.j.Append(&journal.Record{
		Op: journal.OpWrite, Path: p, Ino: n.ino(),
		Ranges: []journal.Range{{off, length}}, Open: true,
	})
	if err != nil {
		return err
	}
	n.sess = &session{openSeq: seq}
	n.vol.sessMu.Lock()
	n.vol.open[n] = struct{}{}
	n.vol.sessMu.Unlock()
	return nil
}

// closeSessionLocked ends the write session: a record names the ranges
// written since it opened, or, if there were none, a close marker says
// the open record already named everything. nd.wmu and the namespace
// lock must be held.
func (n *Node) closeSessionLocked() error {
	s := n.sess
	if s == nil {
		return nil
	}
	var err error
	p, errno := n.path()
	switch {
	case errno != 0:
		err = n.vol.j.CloseSession(n.ino(), s.openSeq)
	case len(s.ranges) > 0:
		_, err = n.vol.j.Append(&journal.Record{Op: journal.OpWrite, Path: p, Ino: n.ino(), Ranges: s.ranges})
	default:
		err = n.vol.j.CloseSession(n.ino(), s.openSeq)
	}
	if err != nil {
		return err
	}
	n.sess = nil
	n.vol.sessMu.Lock()
	delete(n.vol.open, n)
	n.vol.sessMu.Unlock()
	return nil
}

// endSession closes the write session under the right locks.
func (n *Node) endSession() syscall.Errno {
	n.vol.ns.RLock()
	defer n.vol.ns.RUnlock()
	n.wmu.Lock()
	defer n.wmu.Unlock()
	if err := n.closeSessionLocked(); err != nil {
		n.vol.log.Error("journal write record failed", "ino", n.ino(), "err", err)
		return syscall.EIO
	}
	return 0
}

// Flush is called at every close(2) of a descriptor: it ends the write
// session so the journal names the ranges written.
func (f *file) Flush(ctx context.Context) syscall.Errno {
	if errno := f.node.endSession(); errno != 0 {
		return errno
	}
	return f.lf.Flush(ctx)
}

// Fsync makes the file's data and its journal records durable against
// power loss.
func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if errno := f.node.endSession(); errno != 0 {
		return errno
	}
	if err := f.node.vol.j.Sync(); err != nil {
		return syscall.EIO
	}
	return f.lf.Fsync(ctx, flags)
}

// Release closes the backing descriptor.
func (f *file) Release(ctx context.Context) syscall.Errno {
	f.node.hmu.Lock()
	delete(f.node.handles, f)
	f.node.hmu.Unlock()
	return f.lf.Release(ctx)
}

// fd is the backing descriptor (valid until Release).
func (f *file) fd() int {
	fd, _ := f.lf.PassthroughFd()
	return fd
}

// Getattr stats the open file.
func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Getattr(ctx, out)
}

// Lseek implements SEEK_DATA and SEEK_HOLE.
func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}

// Getlk, Setlk and Setlkw implement POSIX record locks on the backing file.
func (f *file) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return f.lf.Getlk(ctx, owner, lk, flags, out)
}

func (f *file) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.lf.Setlk(ctx, owner, lk, flags)
}

func (f *file) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.lf.Setlkw(ctx, owner, lk, flags)
}

// Allocate is fallocate(2): it may change size and content (punch hole,
// zero range), so it is journaled as an operation of its own.
func (f *file) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	n := f.node
	release, p, named, errno := n.beginPath(ctx, "")
	if errno != 0 {
		return errno
	}
	defer release()
	n.wmu.Lock()
	defer n.wmu.Unlock()
	if err := n.closeSessionLocked(); err != nil {
		return syscall.EIO
	}
	return n.journaled(journal.OpFallocate, selfPaths(p, named), func() (*journal.Record, syscall.Errno) {
		rec := &journal.Record{Op: journal.OpFallocate, Path: p, Ino: n.ino(),
			Ranges: []journal.Range{{int64(off), int64(size)}}, Flags: mode}
		return rec, f.lf.Allocate(ctx, off, size, mode)
	})
}

// readOnlyIoctls are the ioctls that cannot change content or metadata.
var readOnlyIoctls = map[uint32]bool{
	unix.FS_IOC_GETFLAGS: true,
	0x80087601:           true, // FS_IOC_GETVERSION
	0x801c581f:           true, // FS_IOC_FSGETXATTR
}

// Ioctl forwards only ioctls that read state; anything that could change
// content or metadata behind the journal's back is refused with ENOTTY.
func (f *file) Ioctl(ctx context.Context, cmd uint32, arg uint64, input []byte, output []byte) (int32, syscall.Errno) {
	if !readOnlyIoctls[cmd] {
		return 0, syscall.ENOTTY
	}
	return f.lf.Ioctl(ctx, cmd, arg, input, output)
}
