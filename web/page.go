package web

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/georep/georep/failover"
	gsync "github.com/georep/georep/sync"
)

// Page is what the daemon reports about itself, as the status page and
// /metrics show it. The daemon gathers it (Backend.Snapshot); the CLI's
// `status --json` is rendered from the same snapshot.
type Page struct {
	Node, ID  string
	Role      string // primary, secondary or fenced
	Epoch     uint64
	Seq       uint64 // the journal's last seq
	Primary   string // the primary's name, as this node knows it
	RoleSince time.Time
	Mount     string
	Backing   string
	Mode      string // continuous, or the cron schedule
	Volume    string // the volume's ID, once this node has one
	// Peers is a primary's view of its secondaries.
	Peers []gsync.PeerStatus
	// Replica is where a secondary's copy stands (nil on a primary).
	Replica   *Replica
	Failback  failover.FailbackStatus
	Conflicts []failover.ConflictSet
	// Nodes, when asked for, is every node as it answers now.
	Nodes []failover.NodeStatus
	Hooks Hooks
	// Counters are the sync engine's totals since start.
	Counters gsync.Counters
}

// Replica is a secondary's copy.
type Replica struct {
	Cursor, CursorEpoch uint64
	Applied             time.Time // when it last applied a batch or finished a full sync
	// InLine is when the primary last said the replica held all it had.
	InLine         time.Time
	NeedsFullSync  bool
	PathsToCompare int
	FullSync       *gsync.TreeProgress // a full sync running now
}

// ValidAsOf is the last moment the replica is known to have held a
// consistent copy of everything the primary had: the later of the last
// batch applied and the primary's last "in line" ping. Before a
// takeover, writes made on the primary after it may be missing here.
func (r *Replica) ValidAsOf() time.Time {
	if r.InLine.After(r.Applied) {
		return r.InLine
	}
	return r.Applied
}

// Hooks are the pre-sync and post-apply hooks and their log.
type Hooks struct {
	PreSync, PostApply string
	Log                string // the log's path
	LastError          string
	// Tail is the log's last lines.
	Tail []string
}

// Backend is the daemon, as the web surface sees it.
type Backend interface {
	// Snapshot reports the node; nodes asks every peer for its claim too
	// (it dials them: the status page does, /metrics does not).
	Snapshot(ctx context.Context, nodes bool) *Page
	// Health says what is wrong with the node ("" when nothing is): the
	// mount does not answer, or (maxLag > 0) a peer lags further.
	Health(ctx context.Context, maxLag time.Duration) string
	// Takeover promotes this node (georep failover start, not forced).
	Takeover(ctx context.Context) (*failover.Report, error)
	// FailbackCommit swaps roles with the primary once a failback this
	// node started is completed (georep failback commit).
	FailbackCommit(ctx context.Context) (*failover.CommitReport, error)
}

// atomicBackend holds a Backend set once the daemon is whole.
type atomicBackend struct{ v atomic.Value }

type backendBox struct{ b Backend }

func (a *atomicBackend) store(b Backend) { a.v.Store(backendBox{b}) }

func (a *atomicBackend) load() Backend {
	if x, ok := a.v.Load().(backendBox); ok {
		return x.b
	}
	return nil
}
