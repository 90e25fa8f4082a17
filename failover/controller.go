package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/georep/georep/journal"
	"github.com/georep/georep/node"
	gsync "github.com/georep/georep/sync"
)

// Mount is what the controller needs of the node's mount (fs.Volume).
type Mount interface {
	// SetReadOnly switches writes off (EROFS) or on.
	SetReadOnly(ro bool)
	// Freeze holds mutating calls (they block) until Thaw; freezes nest.
	Freeze(ctx context.Context) error
	Thaw()
	// Fence makes the mount read-only once no write is in flight and
	// every write session is cut.
	Fence(ctx context.Context) error
	// Cut ends open write sessions, so the journal names their ranges.
	Cut() error
}

// Options configure a Controller.
type Options struct {
	Self    *node.Identity
	DB      *badger.DB
	Journal *journal.Journal
	// Primary is the role a node with no persisted role takes (the
	// daemon's --primary); a persisted role wins over it.
	Primary bool
	Logger  *slog.Logger
}

// Controller keeps a node's role and runs failover and failback.
type Controller struct {
	o     Options
	log   *slog.Logger
	j     *journal.Journal
	eng   *gsync.Engine
	mount Mount
	root  int // the backing dir
	// frozen: the mount started frozen until the start-up check (Run).
	frozen bool
	// settled is closed once the start-up check is done (Settled).
	settled chan struct{}

	mu sync.Mutex
	st State
	// promoting makes Accepts refuse sessions while this node takes the
	// primary role.
	promoting bool
	// committing is set while a failback commit runs on this node.
	committing bool
	// progress samples a failback's pending work for its estimate.
	progress []sample

	// trans serialises role transitions: failover, failback start and
	// commit (either side).
	trans sync.Mutex
	// commitMu orders a promote against a resolve of the same token.
	commitMu sync.Mutex
	// runCtx is Run's context, for work that outlives a request.
	runCtx context.Context
}

// sample is a failback's pending work at one time.
type sample struct {
	t       time.Time
	pending float64
}

// Load reads the node's role, or sets it for a node that has none:
// primary at epoch 1 with --primary, else a secondary that learns its
// primary from the first one that contacts it.
func Load(o Options) (*Controller, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Controller{o: o, log: o.Logger.With("component", "failover"), j: o.Journal, settled: make(chan struct{})}
	st, ok, err := loadState(o.DB)
	if err != nil {
		return nil, err
	}
	if ok && !validRole(st.Role) {
		return nil, fmt.Errorf("role state names an unknown role %q", st.Role)
	}
	if !ok {
		st = State{Role: gsync.RoleSecondary, Since: time.Now().UTC()}
		if o.Primary {
			epoch := max(o.Journal.Epoch(), 1)
			st = State{Role: gsync.RolePrimary, Epoch: epoch, Primary: o.Self.ID, Since: time.Now().UTC(),
				History: History{{Epoch: epoch, Primary: o.Self.ID}}}
		}
		if err := o.DB.Update(st.put); err != nil {
			return nil, fmt.Errorf("persist role: %w", err)
		}
	} else if o.Primary && st.Role != gsync.RolePrimary {
		c.log.Warn("ignoring --primary: this node's persisted role wins (use georep failover start to promote it)",
			"role", st.Role, "epoch", st.Epoch)
	}
	if st.Role == gsync.RolePrimary && o.Journal.Epoch() != st.Epoch {
		if err := o.Journal.SetEpoch(st.Epoch); err != nil {
			return nil, err
		}
	}
	c.st = st
	return c, nil
}

// Role is the node's role now.
func (c *Controller) Role() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Role
}

// State returns a copy of the persisted state.
func (c *Controller) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.clone()
}

// Attach gives the controller the sync engine, the mount and the backing
// dir, and registers the failover purposes with the engine. frozen says
// the mount was started frozen for the start-up check.
func (c *Controller) Attach(eng *gsync.Engine, m Mount, root int, frozen bool) error {
	c.eng, c.mount, c.root, c.frozen = eng, m, root, frozen
	if c.Role() == gsync.RolePrimary {
		// The first primary of a volume names it.
		if err := eng.SetVolume(""); err != nil {
			return err
		}
	}
	eng.Handle(gsync.PurposeQuery, c.serveQuery)
	eng.Handle(gsync.PurposeKick, c.serveKick)
	eng.Handle(gsync.PurposeCommit, c.serveCommit)
	eng.Handle(gsync.PurposeResolve, c.serveResolve)
	return nil
}

// save persists st as the node's state (c.mu held).
func (c *Controller) saveLocked(st State) error {
	if err := c.o.DB.Update(st.put); err != nil {
		return fmt.Errorf("persist role %s at epoch %d: %w", st.Role, st.Epoch, err)
	}
	if err := c.o.DB.Sync(); err != nil {
		return fmt.Errorf("persist role %s at epoch %d: %w", st.Role, st.Epoch, err)
	}
	old := c.st
	c.st = st
	if old.Role != st.Role || old.Epoch != st.Epoch || old.Primary != st.Primary {
		// One line per role change, whatever made it (failover, fencing,
		// joining, failback): monitoring greps for it.
		c.log.Info("role change", "from", old.Role, "to", st.Role, "epoch", st.Epoch, "from_epoch", old.Epoch,
			"primary", c.peerName(st.Primary))
	}
	return nil
}

// update applies fn to a copy of the state and persists it.
func (c *Controller) update(fn func(*State)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st.clone()
	fn(&st)
	return c.saveLocked(st)
}

// Claim is what this node says of itself (sync.Roles).
func (c *Controller) Claim() gsync.Claim {
	c.mu.Lock()
	st := c.st
	c.mu.Unlock()
	cl := gsync.Claim{Name: c.o.Self.Name, Role: st.Role, Epoch: st.Epoch, Primary: st.Primary, Since: st.Since}
	if st.Role == gsync.RoleSecondary && c.eng != nil {
		rs, _ := c.eng.Receiver().State()
		cl.History, cl.Seq = rs.History, rs.Cursor
	} else {
		cl.History, cl.Seq = st.History, c.j.Seq()
	}
	return cl
}

// position is where this node's data stands: its journal while it is (or
// was, until it joins a new primary) the primary, else its replica.
func (c *Controller) position() (History, uint64, bool) {
	c.mu.Lock()
	st := c.st
	c.mu.Unlock()
	if st.Role == gsync.RoleSecondary {
		rs, _ := c.eng.Receiver().State()
		return rs.History, rs.Cursor, false
	}
	return st.History, c.j.Seq(), true
}

// IsPrimary reports whether this node is the primary (sync.Roles).
func (c *Controller) IsPrimary() bool { return c.Role() == gsync.RolePrimary }

// newer reports whether a claim of (epoch, primary) outranks the state's:
// a higher epoch, or at the same epoch (two nodes promoted apart from each
// other) a primary the state does not know yet or with a smaller node ID.
func newer(st *State, epoch uint64, primary string) bool {
	switch {
	case epoch != st.Epoch:
		return epoch > st.Epoch
	case primary == "" || primary == st.Primary:
		return false
	}
	return st.Primary == "" || primary < st.Primary
}

// Observe learns from a peer's claim (sync.Roles): a newer epoch or
// primary is adopted and persisted, and a primary that learns of a newer
// one fences itself at once.
func (c *Controller) Observe(peer node.Peer, cl *gsync.Claim) {
	if cl == nil {
		return
	}
	c.mu.Lock()
	if !newer(&c.st, cl.Epoch, cl.Primary) {
		c.mu.Unlock()
		return
	}
	st := c.st.clone()
	wasPrimary := st.Role == gsync.RolePrimary
	st.Epoch, st.Primary = cl.Epoch, cl.Primary
	if h := st.Handover; h != nil && cl.Primary == h.To && cl.Epoch >= h.Epoch {
		// The node this one handed over to took the role: resolved.
		st.Handover = nil
	}
	if wasPrimary {
		st.Role, st.Since = gsync.RoleFenced, time.Now().UTC()
		// Writers stop now; the rest of the fence follows.
		c.mount.SetReadOnly(true)
	}
	err := c.saveLocked(st)
	c.mu.Unlock()
	if err != nil {
		c.log.Error("persist a newer epoch", "err", err)
	}
	if !wasPrimary {
		c.log.Info("learned a newer epoch", "from", peer.Name, "epoch", cl.Epoch, "primary", c.peerName(cl.Primary))
	}
	if wasPrimary {
		c.log.Error("fenced: another node is the primary now; this mount is read-only and the writes it took since its last acknowledged batch will be kept as conflict copies",
			"epoch", cl.Epoch, "primary", c.peerName(cl.Primary))
		go c.finishFence()
	}
}

// finishFence stops shipping and waits for writes in flight, after the
// mount went read-only.
func (c *Controller) finishFence() {
	c.eng.StopShipping()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.mount.Fence(ctx); err != nil {
		c.log.Error("fence the mount", "err", err)
	}
}

// Accepts says why a replication session from peer, claiming cl, may not
// run (sync.Roles): this node follows only the primary of its epoch.
func (c *Controller) Accepts(peer node.Peer, cl *gsync.Claim) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &c.st
	switch {
	case cl.Role != gsync.RolePrimary:
		return fmt.Errorf("%s is not a primary (%s)", peer.Name, cl.Role)
	case c.promoting:
		return errors.New("this node is becoming the primary")
	case st.Role == gsync.RolePrimary:
		return fmt.Errorf("this node is the primary of epoch %d", st.Epoch)
	case st.Handover != nil:
		return fmt.Errorf("this node handed the primary role to %s and waits to learn whether it took it", st.Handover.ToName)
	case cl.Epoch != st.Epoch || cl.Primary != st.Primary:
		return fmt.Errorf("this node follows %s at epoch %d, not %s at epoch %d", c.peerName(st.Primary), st.Epoch, peer.Name, cl.Epoch)
	case peer.ID != cl.Primary:
		return fmt.Errorf("%s claims to be another node", peer.Name)
	}
	return nil
}

// peerName names a node ID for messages.
func (c *Controller) peerName(id string) string {
	switch {
	case id == "":
		return "(unknown)"
	case id == c.o.Self.ID:
		return c.o.Self.Name
	}
	if c.eng != nil {
		if p, ok := c.eng.TrustedPeer(id); ok {
			return p.Name
		}
	}
	return id[:min(12, len(id))]
}

// Settled is closed once Run has done the start-up check: from then on
// the node's role is what its peers made it (a restarted primary that
// was deposed meanwhile is fenced by then).
func (c *Controller) Settled() <-chan struct{} { return c.settled }

// Run does the start-up check of a primary whose mount started frozen,
// starts shipping on a primary, and resolves an unresolved handover. It
// returns when ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.mu.Lock()
	c.runCtx = ctx
	st := c.st.clone()
	c.mu.Unlock()
	if c.frozen {
		c.startupCheck(ctx)
	} else if st.Role == gsync.RolePrimary {
		c.eng.StartShipping(ctx)
	}
	close(c.settled)
	if st.Handover != nil {
		go c.resolveLoop(ctx)
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sampleFailback(ctx)
		}
	}
}

// startupWait bounds how long a restarted primary holds writes while it
// asks its peers whether it still is the primary.
const startupWait = 3 * time.Second

// startupCheck asks every peer, with writes held, whether a newer primary
// exists before a restarted primary takes writes again. A newer claim
// fences it (Observe); peers that do not answer within startupWait are
// not waited for.
func (c *Controller) startupCheck(ctx context.Context) {
	defer c.mount.Thaw()
	qctx, cancel := context.WithTimeout(ctx, startupWait)
	nodes := c.queryPeers(qctx)
	cancel()
	reached := 0
	for _, n := range nodes {
		if n.Reachable {
			reached++
		}
	}
	if c.Role() != gsync.RolePrimary {
		return // fenced by a peer's claim (Observe)
	}
	c.log.Info("start-up check done: still the primary", "peers", len(nodes), "reached", reached)
	if reached < len(nodes) {
		c.log.Warn("resuming as primary without hearing from every peer: if another node was promoted meanwhile, this node fences itself when it hears of it, and the writes it takes until then become conflict copies",
			"unreached", len(nodes)-reached)
	}
	c.eng.StartShipping(ctx)
}

// crashPoint kills the process at the named point when the test
// environment asks for it (GEOREP_TEST_CRASH_AT).
func (c *Controller) crashPoint(name string) {
	if os.Getenv("GEOREP_TEST_CRASH_AT") == name {
		c.log.Warn("crash point reached: killing the process", "point", name)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour)
	}
}

// Conflicts lists the conflict sets this node made.
func (c *Controller) Conflicts() []ConflictSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.st.Conflicts)
}
