// Package fs owns georep's FUSE edge: a loopback file system over the
// backing dir that journals every mutation (SPEC §4.1) and implements the
// read-only and freeze modes that replication and failback need.
//
// It wraps go-fuse's LoopbackNode (through NodeWrapChilder) and
// LoopbackFile. Every mutating node method is overridden here; the file
// handle is a wrapper that forwards only what it chooses, so FUSE
// passthrough (which would hide writes from the journal) is never offered.
// Methods return syscall.Errno, as the kernel expects.
//
// Files are split by operation group: entries.go (namespace operations),
// attrs.go (attributes and xattrs), file.go (open files and data),
// volume.go (the shared state and modes), mount.go (mounting).
package fs

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/georep/georep/journal"
)

// HiddenDir is the name, at the volume root, of georep's own directory in
// the backing dir (conflict copies, markers). It is invisible through the
// mount and never journaled.
const HiddenDir = ".georep"

// Volume is the state shared by every node of one mount.
type Volume struct {
	j    *journal.Journal
	log  *slog.Logger
	root *gofs.Inode

	gate gate
	// reads is the read gate of a secondary (see replica.go).
	reads sync.RWMutex

	// asRoot: the daemon runs as root and gives new entries to their
	// creators (os.Getuid is a system call; ask once).
	asRoot bool

	// ns orders path-naming records against directory renames: a rename
	// of a directory that has known descendants holds it exclusively until
	// go-fuse's tree shows the new names.
	ns sync.RWMutex

	sessMu sync.Mutex
	open   map[*Node]struct{} // nodes with an open write session
}

// SetReadOnly switches the mount between writable and read-only: in
// read-only mode every mutating call fails with EROFS.
func (v *Volume) SetReadOnly(ro bool) { v.gate.setReadOnly(ro) }

// ReadOnly reports the mode.
func (v *Volume) ReadOnly() bool { return v.gate.readOnly() }

// Freeze blocks every new mutating call until Thaw and waits until the
// calls already running have finished. Readers are not affected. Freezes
// nest: the mount thaws at the Thaw of the outermost one.
func (v *Volume) Freeze(ctx context.Context) error { return v.gate.freeze(ctx) }

// Thaw ends one Freeze; blocked mutating calls proceed once none is left.
func (v *Volume) Thaw() { v.gate.thaw() }

// Fence makes the mount read-only and returns once no mutating call is in
// flight and every write session is cut: from then on the journal names
// every change the mount made, and writers get EROFS. Calls that were
// blocked by a freeze fail with EROFS when it thaws.
func (v *Volume) Fence(ctx context.Context) error {
	v.SetReadOnly(true)
	if err := v.Freeze(ctx); err != nil {
		return fmt.Errorf("wait for writes in flight: %w", err)
	}
	v.Thaw()
	return v.Cut()
}

// Cut ends every open write session, so the journal names all ranges
// written so far. The sync engine calls it before cutting a batch.
func (v *Volume) Cut() error {
	v.sessMu.Lock()
	nodes := make([]*Node, 0, len(v.open))
	for n := range v.open {
		nodes = append(nodes, n)
	}
	v.sessMu.Unlock()
	var first error
	for _, n := range nodes {
		if errno := n.endSession(); errno != 0 && first == nil {
			first = fmt.Errorf("end write session of inode %d: %w", n.ino(), errno)
		}
	}
	return first
}

// relPath is the node's path relative to the volume root. ok is false for
// a node no name reaches any more (unlinked while open).
func (v *Volume) relPath(in *gofs.Inode) (string, bool) {
	var segs []string
	for p := in; p != v.root; {
		name, parent := p.Parent()
		if parent == nil {
			return "", false
		}
		segs = append(segs, name)
		p = parent
	}
	for i, k := 0, len(segs)-1; i < k; i, k = i+1, k-1 {
		segs[i], segs[k] = segs[k], segs[i]
	}
	return strings.Join(segs, "/"), true
}

// join names child name of directory path dir.
func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// intent records that op is about to run on paths. The returned id is
// handed to done.
func (v *Volume) intent(op journal.Op, paths ...string) (uint64, syscall.Errno) {
	id, err := v.j.Intent(op, paths...)
	if err != nil {
		v.log.Error("journal intent failed; refusing the operation", "op", op, "paths", paths, "err", err)
		return 0, syscall.EIO
	}
	return id, 0
}

// done records the outcome of intent id: rec when errno is 0, an abort
// otherwise. It returns errno, or EIO when the journal cannot record a
// mutation that did happen (the mutation stays named by its intent).
func (v *Volume) done(id uint64, errno syscall.Errno, rec *journal.Record) syscall.Errno {
	if errno != 0 {
		if err := v.j.Abort(id); err != nil {
			v.log.Error("journal abort failed", "op", rec.Op, "path", rec.Path, "err", err)
		}
		return errno
	}
	if _, err := v.j.Commit(id, rec); err != nil {
		v.log.Error("journal record failed after the operation ran", "op", rec.Op, "path", rec.Path, "err", err)
		return syscall.EIO
	}
	return 0
}

// gate implements the read-only and freeze modes and counts mutating
// calls in flight.
type gate struct {
	mu       sync.Mutex
	cond     *sync.Cond
	ro       bool
	roFlag   atomic.Bool // ro, for lock-free reads
	frozen   int         // freezes in force (they nest)
	inflight int
	// frozenAt is when the outermost freeze began; onThaw, if set, is
	// told how long mutating calls were held when the last one ends.
	frozenAt time.Time
	onThaw   func(held time.Duration)
}

func (g *gate) init() { g.cond = sync.NewCond(&g.mu) }

// enter admits one mutating call: EROFS in read-only mode; while frozen it
// blocks until thaw or until the caller is interrupted (EINTR).
func (g *gate) enter(ctx context.Context) syscall.Errno {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.frozen > 0 {
		stop := context.AfterFunc(ctx, func() {
			g.mu.Lock()
			g.cond.Broadcast()
			g.mu.Unlock()
		})
		defer stop()
		for g.frozen > 0 {
			if ctx.Err() != nil {
				return syscall.EINTR
			}
			g.cond.Wait()
		}
	}
	if g.ro {
		return syscall.EROFS
	}
	g.inflight++
	return 0
}

func (g *gate) leave() {
	g.mu.Lock()
	g.inflight--
	if g.inflight == 0 {
		g.cond.Broadcast()
	}
	g.mu.Unlock()
}

func (g *gate) setReadOnly(ro bool) {
	g.mu.Lock()
	g.ro = ro
	g.roFlag.Store(ro)
	g.mu.Unlock()
}

func (g *gate) readOnly() bool { return g.roFlag.Load() }

func (g *gate) freeze(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.frozen == 0 {
		g.frozenAt = time.Now()
	}
	g.frozen++
	stop := context.AfterFunc(ctx, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	defer stop()
	for g.inflight > 0 {
		if err := ctx.Err(); err != nil {
			g.frozen--
			g.cond.Broadcast()
			if g.frozen == 0 && g.onThaw != nil {
				g.onThaw(time.Since(g.frozenAt))
			}
			return err
		}
		g.cond.Wait()
	}
	return nil
}

func (g *gate) thaw() {
	g.mu.Lock()
	was := g.frozen
	if g.frozen > 0 {
		g.frozen--
	}
	if g.frozen == 0 {
		g.cond.Broadcast()
	}
	held, report := time.Since(g.frozenAt), was == 1 && g.onThaw != nil
	g.mu.Unlock()
	if report {
		g.onThaw(held)
	}
}
