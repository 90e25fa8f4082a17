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

// Namespace operations. The kernel holds the parent directory's lock
// around each of these, so two operations on the same name never race;
// the journal's seq order is the order in which they took effect.

var _ = (gofs.NodeLookuper)((*Node)(nil))

// Lookup resolves name; georep's own dir at the root does not exist for
// applications.
func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.hidden(name) {
		return nil, syscall.ENOENT
	}
	defer n.vol.reading()()
	return n.LoopbackNode.Lookup(ctx, name, out)
}

var _ = (gofs.NodeGetattrer)((*Node)(nil))

// Getattr stats the node (through the open file f when there is one).
func (n *Node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	defer n.vol.reading()()
	return n.LoopbackNode.Getattr(ctx, f, out)
}

var _ = (gofs.NodeReadlinker)((*Node)(nil))

// Readlink reads a symbolic link's target.
func (n *Node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	defer n.vol.reading()()
	return n.LoopbackNode.Readlink(ctx)
}

var _ = (gofs.NodeOpendirHandler)((*Node)(nil))

// OpendirHandle opens a directory stream; at the root the stream skips
// georep's own dir.
func (n *Node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	release := n.vol.reading()
	fh, fl, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	release()
	if errno != 0 || !n.isRoot() {
		return fh, fl, errno
	}
	return &rootDir{fh.(gofs.DirStream)}, fl, 0
}

var _ = (gofs.NodeCreater)((*Node)(nil))

// Create creates and opens a regular file owned by the caller. A create
// of an existing name reaches Open instead (the kernel looked it up).
func (n *Node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (ch *gofs.Inode, fh gofs.FileHandle, fuseFlags uint32, errno syscall.Errno) {
	if n.hidden(name) {
		return nil, nil, 0, syscall.EPERM
	}
	release, p, _, errno := n.beginPath(ctx, name)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	defer release()
	errno = n.journaled(journal.OpCreate, []string{p}, func() (*journal.Record, syscall.Errno) {
		ch, fh, fuseFlags, errno = n.LoopbackNode.Create(ctx, name, flags, mode, out)
		if errno != 0 {
			return nil, errno
		}
		n.ownByCaller(ctx, name, out)
		n.restoreSpecialBits(name, mode, out)
		return attrRecord(&journal.Record{Op: journal.OpCreate, Path: p}, &out.Attr), 0
	})
	if errno != 0 {
		if fh != nil {
			fh.(gofs.FileReleaser).Release(ctx)
		}
		return nil, nil, 0, errno
	}
	return ch, n.wrapFile(ch, fh), fuseFlags, 0
}

var _ = (gofs.NodeMkdirer)((*Node)(nil))

// Mkdir creates a directory owned by the caller.
func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	errno = n.newEntry(ctx, journal.OpMkdir, name, out, func() syscall.Errno {
		if ch, errno = n.LoopbackNode.Mkdir(ctx, name, mode, out); errno == 0 {
			n.restoreSpecialBits(name, mode, out)
		}
		return errno
	}, nil)
	return ch, errno
}

var _ = (gofs.NodeMknoder)((*Node)(nil))

// Mknod creates a device node, fifo or socket owned by the caller.
func (n *Node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	errno = n.newEntry(ctx, journal.OpMknod, name, out, func() syscall.Errno {
		ch, errno = n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
		return errno
	}, func(r *journal.Record) { r.Rdev = rdev })
	return ch, errno
}

var _ = (gofs.NodeSymlinker)((*Node)(nil))

// Symlink creates a symbolic link owned by the caller.
func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	errno = n.newEntry(ctx, journal.OpSymlink, name, out, func() syscall.Errno {
		ch, errno = n.LoopbackNode.Symlink(ctx, target, name, out)
		return errno
	}, func(r *journal.Record) { r.Target = target })
	return ch, errno
}

// newEntry journals the creation of name by run, then gives it to the
// caller and fills the record's attributes.
func (n *Node) newEntry(ctx context.Context, op journal.Op, name string, out *fuse.EntryOut, run func() syscall.Errno, extra func(*journal.Record)) syscall.Errno {
	if n.hidden(name) {
		return syscall.EPERM
	}
	release, p, _, errno := n.beginPath(ctx, name)
	if errno != 0 {
		return errno
	}
	defer release()
	return n.journaled(op, []string{p}, func() (*journal.Record, syscall.Errno) {
		if errno := run(); errno != 0 {
			return nil, errno
		}
		n.ownByCaller(ctx, name, out)
		rec := attrRecord(&journal.Record{Op: op, Path: p}, &out.Attr)
		if extra != nil {
			extra(rec)
		}
		return rec, 0
	})
}

// ownByCaller completes giving a new entry to the calling user, as a
// local file system would. go-fuse's loopback already chowns it to the
// caller's uid and gid; in a set-group-ID directory the entry must keep
// the directory's group instead.
func (n *Node) ownByCaller(ctx context.Context, name string, out *fuse.EntryOut) {
	if _, ok := fuse.FromContext(ctx); !ok || !n.vol.asRoot {
		return
	}
	var dir unix.Stat_t
	if err := unix.Lstat(n.backing(), &dir); err != nil || dir.Mode&unix.S_ISGID == 0 || out.Attr.Gid == dir.Gid {
		return
	}
	if err := unix.Lchown(n.backing()+"/"+name, -1, int(dir.Gid)); err == nil {
		out.Attr.Gid = dir.Gid
	}
}

// restoreSpecialBits sets the set-user-ID, set-group-ID and sticky bits
// the caller asked for: go-fuse's loopback creates through os.Mkdir and
// os.OpenFile, which drop them. The kernel has already stripped what the
// caller may not set. Bits the new entry inherited (a set-group-ID
// directory's S_ISGID) are kept.
func (n *Node) restoreSpecialBits(name string, mode uint32, out *fuse.EntryOut) {
	const special = unix.S_ISUID | unix.S_ISGID | unix.S_ISVTX
	if mode&special == 0 || out.Attr.Mode&special == mode&special {
		return
	}
	perm := out.Attr.Mode&0o7777 | mode&special
	if err := unix.Chmod(n.backing()+"/"+name, perm); err == nil {
		out.Attr.Mode = out.Attr.Mode&unix.S_IFMT | perm
	}
}

// backing is the node's path in the backing dir (for syscalls of our own).
func (n *Node) backing() string {
	p, _ := n.vol.relPath(n.EmbeddedInode())
	if p == "" {
		return n.RootData.Path
	}
	return n.RootData.Path + "/" + p
}

var _ = (gofs.NodeLinker)((*Node)(nil))

// Link makes name a new hard link to target.
func (n *Node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (ch *gofs.Inode, errno syscall.Errno) {
	if n.hidden(name) {
		return nil, syscall.EPERM
	}
	tn, ok := target.(*Node)
	if !ok {
		return nil, syscall.EXDEV
	}
	release, errno := n.begin(ctx)
	if errno != 0 {
		return nil, errno
	}
	defer release()
	dir, errno := n.path()
	if errno != 0 {
		return nil, errno
	}
	old, errno := tn.path()
	if errno != 0 {
		return nil, errno
	}
	p := join(dir, name)
	errno = n.journaled(journal.OpLink, []string{old, p}, func() (*journal.Record, syscall.Errno) {
		ch, errno = n.LoopbackNode.Link(ctx, tn.LoopbackNode, name, out)
		if errno != 0 {
			return nil, errno
		}
		return &journal.Record{Op: journal.OpLink, Path: old, NewPath: p, Ino: tn.ino()}, 0
	})
	return ch, errno
}

var _ = (gofs.NodeUnlinker)((*Node)(nil))

// Unlink removes name; the journal keeps a negative entry for it.
func (n *Node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, journal.OpUnlink, name, func() syscall.Errno { return n.LoopbackNode.Unlink(ctx, name) })
}

var _ = (gofs.NodeRmdirer)((*Node)(nil))

// Rmdir removes the empty directory name.
func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, journal.OpRmdir, name, func() syscall.Errno { return n.LoopbackNode.Rmdir(ctx, name) })
}

func (n *Node) remove(ctx context.Context, op journal.Op, name string, run func() syscall.Errno) syscall.Errno {
	if n.hidden(name) {
		return syscall.ENOENT
	}
	release, p, _, errno := n.beginPath(ctx, name)
	if errno != 0 {
		return errno
	}
	defer release()
	var ino uint64
	if ch := n.GetChild(name); ch != nil {
		ino = ch.StableAttr().Ino
	}
	return n.journaled(op, []string{p}, func() (*journal.Record, syscall.Errno) {
		if errno := run(); errno != 0 {
			return nil, errno
		}
		return &journal.Record{Op: op, Path: p, Ino: ino}, 0
	})
}

var _ = (gofs.NodeRenamer)((*Node)(nil))

// Rename moves name to newName in newParent, honouring RENAME_NOREPLACE
// and RENAME_EXCHANGE. It is journaled as one rename, never as a delete
// and a copy, whatever lies below a moved directory.
func (n *Node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*Node)
	if !ok {
		return syscall.EXDEV
	}
	if n.hidden(name) || np.hidden(newName) {
		return syscall.EPERM
	}
	moved, dest := n.GetChild(name), np.GetChild(newName)
	hasKnownChildren := func(in *gofs.Inode) bool { return in != nil && in.IsDir() && len(in.Children()) > 0 }
	treeBound := hasKnownChildren(moved) || (flags&unix.RENAME_EXCHANGE != 0 && hasKnownChildren(dest))
	if errno := n.vol.gate.enter(ctx); errno != 0 {
		return errno
	}
	defer n.vol.gate.leave()
	if treeBound {
		// Nodes below the moved directory are known to go-fuse: hold
		// the namespace exclusively until its tree shows the move, so no
		// concurrent record names a path from before it.
		n.vol.ns.Lock()
	} else {
		n.vol.ns.RLock()
	}
	unlock := n.vol.ns.RUnlock
	if treeBound {
		unlock = n.vol.ns.Unlock
	}
	dir, errno := n.path()
	if errno != 0 {
		unlock()
		return errno
	}
	ndir, errno := np.path()
	if errno != 0 {
		unlock()
		return errno
	}
	from, to := join(dir, name), join(ndir, newName)
	errno = n.journaled(journal.OpRename, []string{from, to}, func() (*journal.Record, syscall.Errno) {
		if errno := n.LoopbackNode.Rename(ctx, name, np.LoopbackNode, newName, flags); errno != 0 {
			return nil, errno
		}
		rec := &journal.Record{Op: journal.OpRename, Path: from, NewPath: to, Flags: flags}
		if moved != nil {
			rec.Ino = moved.StableAttr().Ino
		}
		return rec, 0
	})
	if errno != 0 || !treeBound {
		unlock()
		return errno
	}
	go n.vol.unlockWhenMoved(n.EmbeddedInode(), name, np.EmbeddedInode(), newName, moved, dest, flags)
	return 0
}

// unlockWhenMoved releases the exclusive namespace lock once go-fuse has
// applied the rename to its tree (it does so right after Rename returns),
// or after a second at the latest.
func (v *Volume) unlockWhenMoved(oldParent *gofs.Inode, name string, newParent *gofs.Inode, newName string, moved, dest *gofs.Inode, flags uint32) {
	defer v.ns.Unlock()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		done := newParent.GetChild(newName) == moved
		if flags&unix.RENAME_EXCHANGE != 0 && dest != nil {
			done = done && oldParent.GetChild(name) == dest
		}
		if done {
			return
		}
		time.Sleep(20 * time.Microsecond)
	}
	v.log.Warn("rename not reflected in the inode tree after 1s", "name", name, "new_name", newName)
}

var _ = (gofs.NodeTmpfiler)((*Node)(nil))

// Tmpfile (O_TMPFILE) is refused: an unnamed file that may later be
// linked in cannot be journaled by path. Callers fall back to a named
// temporary file.
func (n *Node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// rootDir is the root's directory stream without georep's own dir.
type rootDir struct{ gofs.DirStream }

var (
	_ = (gofs.FileReaddirenter)((*rootDir)(nil))
	_ = (gofs.FileSeekdirer)((*rootDir)(nil))
	_ = (gofs.FileReleasedirer)((*rootDir)(nil))
	_ = (gofs.FileFsyncdirer)((*rootDir)(nil))
)

func (d *rootDir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	for {
		de, errno := d.DirStream.(gofs.FileReaddirenter).Readdirent(ctx)
		if errno != 0 || de == nil || de.Name != HiddenDir {
			return de, errno
		}
	}
}

func (d *rootDir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	return d.DirStream.(gofs.FileSeekdirer).Seekdir(ctx, off)
}

func (d *rootDir) Releasedir(ctx context.Context, flags uint32) {
	d.DirStream.(gofs.FileReleasedirer).Releasedir(ctx, flags)
}

func (d *rootDir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return d.DirStream.(gofs.FileFsyncdirer).Fsyncdir(ctx, flags)
}
