package fs

import (
	"context"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/georep/georep/journal"
)

// Node is one inode of the mount: a LoopbackNode whose mutating methods
// are journaled. Hardlinks share one Node (go-fuse keys nodes by inode).
type Node struct {
	*gofs.LoopbackNode
	vol *Volume

	// wmu guards the write session and serialises data mutations of the
	// file against session cuts, so no write can land after the record
	// that was supposed to name it.
	wmu  sync.Mutex
	sess *session

	// hmu guards handles, the node's open files: calls the kernel makes
	// without a file handle (fchmod, fsetxattr) reach a file that no name
	// reaches any more through one of them.
	hmu     sync.Mutex
	handles map[*file]struct{}
}

// session is an open write session: its first write was journaled with an
// Open record (the durable intent); later writes only add ranges here
// until the session is closed by a record naming them.
type session struct {
	openSeq uint64
	ranges  []journal.Range
}

var _ = (gofs.NodeWrapChilder)((*Node)(nil))

// WrapChild makes every node go-fuse creates below the root a journaled
// Node.
func (n *Node) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &Node{LoopbackNode: ops.(*gofs.LoopbackNode), vol: n.vol}
}

func (n *Node) ino() uint64 { return n.StableAttr().Ino }

func (n *Node) isRoot() bool { return n.EmbeddedInode() == n.vol.root }

// hidden reports whether name in this directory is georep's own dir.
func (n *Node) hidden(name string) bool { return name == HiddenDir && n.isRoot() }

// path is the node's volume-relative path (ENOENT once unreachable).
func (n *Node) path() (string, syscall.Errno) {
	p, ok := n.vol.relPath(n.EmbeddedInode())
	if !ok {
		return "", syscall.ENOENT
	}
	return p, 0
}

// begin admits a mutating call (see gate.enter) and holds the namespace
// lock shared so the paths it records stay true. Call the returned func
// when done.
func (n *Node) begin(ctx context.Context) (func(), syscall.Errno) {
	if errno := n.vol.gate.enter(ctx); errno != 0 {
		return nil, errno
	}
	n.vol.ns.RLock()
	return func() {
		n.vol.ns.RUnlock()
		n.vol.gate.leave()
	}, 0
}

// beginPath is begin, plus the volume path of child name of this node,
// or of the node itself when name is "", which stays true until release.
// named is false when no name reaches the node any more (a file unlinked
// while open): it can still be changed through its descriptors, and there
// is nothing to replicate.
func (n *Node) beginPath(ctx context.Context, name string) (release func(), p string, named bool, errno syscall.Errno) {
	if release, errno = n.begin(ctx); errno != 0 {
		return nil, "", false, errno
	}
	if p, errno = n.path(); errno != 0 {
		if name == "" {
			return release, "", false, 0
		}
		release()
		return nil, "", false, errno
	}
	if name != "" {
		p = join(p, name)
	}
	return release, p, true, 0
}

// journaled runs fn bracketed by an intent on paths and its record. fn
// returns the record to commit (nil: a plain record of op on paths[0]).
// With no paths (a node no name reaches), fn runs unjournaled.
func (n *Node) journaled(op journal.Op, paths []string, fn func() (*journal.Record, syscall.Errno)) syscall.Errno {
	if len(paths) == 0 {
		_, errno := fn()
		return errno
	}
	id, errno := n.vol.intent(op, paths...)
	if errno != 0 {
		return errno
	}
	rec, errno := fn()
	if rec == nil {
		rec = &journal.Record{Op: op, Path: paths[0]}
	}
	return n.vol.done(id, errno, rec)
}

// selfPaths is the path list of an operation on the node itself: none
// when no name reaches it.
func selfPaths(p string, named bool) []string {
	if !named {
		return nil
	}
	return []string{p}
}

// attrRecord fills the replay fields of rec from the attributes the
// backing fs reported.
func attrRecord(rec *journal.Record, a *fuse.Attr) *journal.Record {
	mode, uid, gid := a.Mode, a.Uid, a.Gid
	rec.Mode, rec.UID, rec.GID = &mode, &uid, &gid
	rec.Ino = a.Ino
	return rec
}
