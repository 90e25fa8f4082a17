package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/journal"
)

// Attribute and extended-attribute operations.

var _ = (gofs.NodeSetattrer)((*Node)(nil))

// Setattr changes mode, owner, size or times (chmod, chown, truncate,
// utimensat). A size change is journaled as truncate, the rest as one
// setattr record carrying the values the backing fs ended up with.
func (n *Node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	release, p, named, errno := n.beginPath(ctx, "")
	if errno != 0 {
		return errno
	}
	defer release()
	if wf, ok := f.(*file); ok {
		f = wf.lf
	} else if !named {
		if of := n.anyFile(); of != nil {
			f = of.lf // fchmod of a file no name reaches: only a descriptor can
		}
	}
	size, sizeSet := in.GetSize()
	if sizeSet {
		// Data and size change together: order against writes.
		n.wmu.Lock()
		defer n.wmu.Unlock()
		if err := n.closeSessionLocked(); err != nil {
			return syscall.EIO
		}
	}
	return n.journaled(journal.OpSetattr, selfPaths(p, named), func() (*journal.Record, syscall.Errno) {
		if errno := n.LoopbackNode.Setattr(ctx, f, in, out); errno != 0 {
			return nil, errno
		}
		rec := &journal.Record{Op: journal.OpSetattr, Path: p, Ino: n.ino()}
		if sizeSet {
			rec.Op, rec.Size = journal.OpTruncate, &size
		}
		if _, ok := in.GetMode(); ok {
			m := out.Mode
			rec.Mode = &m
		}
		if _, ok := in.GetUID(); ok {
			u := out.Uid
			rec.UID = &u
		}
		if _, ok := in.GetGID(); ok {
			g := out.Gid
			rec.GID = &g
		}
		if _, ok := in.GetATime(); ok {
			t := time.Unix(int64(out.Atime), int64(out.Atimensec)).UTC()
			rec.Atime = &t
		}
		if _, ok := in.GetMTime(); ok {
			t := time.Unix(int64(out.Mtime), int64(out.Mtimensec)).UTC()
			rec.Mtime = &t
		}
		return rec, 0
	})
}

var _ = (gofs.NodeGetxattrer)((*Node)(nil))

// Getxattr reads an extended attribute.
func (n *Node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	defer n.vol.reading()()
	return n.LoopbackNode.Getxattr(ctx, attr, dest)
}

var _ = (gofs.NodeListxattrer)((*Node)(nil))

// Listxattr lists the extended attributes' names.
func (n *Node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	defer n.vol.reading()()
	return n.LoopbackNode.Listxattr(ctx, dest)
}

var _ = (gofs.NodeSetxattrer)((*Node)(nil))

// Setxattr sets an extended attribute (journaled with its value).
func (n *Node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return n.xattrOp(ctx, journal.OpSetxattr, attr, func(r *journal.Record, of *file) syscall.Errno {
		r.Value, r.Flags = append([]byte{}, data...), flags
		if of != nil {
			return gofs.ToErrno(unix.Fsetxattr(of.fd(), attr, data, int(flags)))
		}
		return n.LoopbackNode.Setxattr(ctx, attr, data, flags)
	})
}

var _ = (gofs.NodeRemovexattrer)((*Node)(nil))

// Removexattr removes an extended attribute.
func (n *Node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return n.xattrOp(ctx, journal.OpRemovexattr, attr, func(_ *journal.Record, of *file) syscall.Errno {
		if of != nil {
			return gofs.ToErrno(unix.Fremovexattr(of.fd(), attr))
		}
		return n.LoopbackNode.Removexattr(ctx, attr)
	})
}

// xattrOp journals an xattr change made by run; run gets an open file to
// go through when no name reaches the node.
func (n *Node) xattrOp(ctx context.Context, op journal.Op, attr string, run func(*journal.Record, *file) syscall.Errno) syscall.Errno {
	release, p, named, errno := n.beginPath(ctx, "")
	if errno != 0 {
		return errno
	}
	defer release()
	return n.journaled(op, selfPaths(p, named), func() (*journal.Record, syscall.Errno) {
		rec := &journal.Record{Op: op, Path: p, Ino: n.ino(), Xattr: attr}
		var of *file
		if !named {
			of = n.anyFile()
		}
		return rec, run(rec, of)
	})
}

var _ = (gofs.NodeCopyFileRanger)((*Node)(nil))

// CopyFileRange copies bytes between two open files inside the volume.
// It is journaled as a write of the destination range.
func (n *Node) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	in, ok1 := fhIn.(*file)
	dst, ok2 := fhOut.(*file)
	if !ok1 || !ok2 {
		return 0, syscall.EXDEV
	}
	var count uint32
	errno := dst.mutateData(ctx, int64(offOut), int64(length), func() syscall.Errno {
		var errno syscall.Errno
		count, errno = n.LoopbackNode.CopyFileRange(ctx, in.lf, offIn, out, dst.lf, offOut, length, flags)
		return errno
	})
	return count, errno
}
