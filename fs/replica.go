package fs

import (
	"context"
	"fmt"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/georep/georep/journal"
)

// Replica support: what the sync engine needs from the mount on either
// side of a link.
//
// On a secondary the receiver changes the backing dir behind the mount's
// back. So that no application ever sees a batch half applied, reads
// through the mount hold the read gate shared and the receiver holds it
// exclusively while it applies (BlockReads, UnblockReads); files opened on
// a read-only mount bypass the page cache (FOPEN_DIRECT_IO), so every read
// of their data passes that gate. After a batch, Invalidate brings
// go-fuse's inode tree and the kernel's caches in line with the backing
// dir.
//
// On the primary, Quiesce gives the sync engine an instant at which the
// journal names every change in the backing dir.

// BlockReads waits for the reads through the mount in flight and holds
// new ones until UnblockReads.
func (v *Volume) BlockReads() { v.reads.Lock() }

// UnblockReads lets reads proceed. Call Invalidate afterwards, never
// before: the kernel may wait, while invalidating, for a read that is
// itself waiting for the gate.
func (v *Volume) UnblockReads() { v.reads.Unlock() }

// reading admits one read through the mount; call the result when done.
// Only a read-only mount has a receiver to wait for: a writable one
// (the primary) skips the gate and its shared cache line.
func (v *Volume) reading() func() {
	if !v.ReadOnly() {
		return noop
	}
	v.reads.RLock()
	return v.reads.RUnlock
}

func noop() {}

// Quiesce runs fn at a quiet instant: mutating calls are held off (they
// block, they do not fail) and every write session is cut, so the journal
// names every change made to the backing dir so far.
func (v *Volume) Quiesce(ctx context.Context, fn func() error) error {
	if err := v.Freeze(ctx); err != nil {
		return fmt.Errorf("freeze mount: %w", err)
	}
	defer v.Thaw()
	if err := v.Cut(); err != nil {
		return err
	}
	return fn()
}

// Invalidate brings go-fuse's tree and the kernel's caches in line with
// changes the receiver made to the backing dir, described as records:
// renamed and removed names move or leave the tree, new names drop
// cached negative entries, and changed files drop cached attributes and
// data.
func (v *Volume) Invalidate(recs []*journal.Record) {
	for _, r := range recs {
		switch r.Op {
		case journal.OpRename:
			v.mirrorRename(r.Path, r.NewPath, r.Flags)
		case journal.OpUnlink, journal.OpRmdir:
			if parent, name := v.lookupParent(r.Path); parent != nil {
				child := parent.GetChild(name)
				parent.RmChild(name)
				v.notify(parent.NotifyEntry(name), r.Path)
				if child != nil {
					v.notify(child.NotifyContent(0, 0), r.Path)
				}
			}
		default:
			if parent, name := v.lookupParent(r.Path); parent != nil {
				v.notify(parent.NotifyEntry(name), r.Path)
			}
			if in := v.lookup(r.Path); in != nil {
				v.notify(in.NotifyContent(0, 0), r.Path)
			}
			if r.NewPath != "" { // link
				if parent, name := v.lookupParent(r.NewPath); parent != nil {
					v.notify(parent.NotifyEntry(name), r.NewPath)
				}
			}
		}
	}
}

func (v *Volume) mirrorRename(from, to string, flags uint32) {
	op, oname := v.lookupParent(from)
	np, nname := v.lookupParent(to)
	switch {
	case op != nil && np != nil:
		if flags&renameExchange != 0 {
			op.ExchangeChild(oname, np, nname)
		} else {
			op.MvChild(oname, np, nname, true)
		}
	case op != nil:
		op.RmChild(oname)
	case np != nil:
		np.RmChild(nname)
	}
	if op != nil {
		v.notify(op.NotifyEntry(oname), from)
	}
	if np != nil {
		v.notify(np.NotifyEntry(nname), to)
	}
}

// renameExchange is RENAME_EXCHANGE.
const renameExchange = 1 << 1

// notify logs a failed cache notification; ENOENT (the kernel had nothing
// cached) and ENOSYS (not mounted yet, or an old kernel) are not failures.
func (v *Volume) notify(errno syscall.Errno, p string) {
	if errno != 0 && errno != syscall.ENOENT && errno != syscall.ENOSYS {
		v.log.Warn("kernel cache invalidation failed", "path", p, "err", errno)
	}
}

// lookup walks go-fuse's tree to the inode at volume path p, or nil when
// the kernel never looked it up.
func (v *Volume) lookup(p string) *gofs.Inode {
	in := v.root
	if p == "" {
		return in
	}
	for name := range strings.SplitSeq(p, "/") {
		if in = in.GetChild(name); in == nil {
			return nil
		}
	}
	return in
}

// lookupParent is the inode of p's parent directory, if in the tree, and
// p's last name.
func (v *Volume) lookupParent(p string) (*gofs.Inode, string) {
	dir, name := "", p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir, name = p[:i], p[i+1:]
	}
	return v.lookup(dir), name
}
