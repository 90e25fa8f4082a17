package failover

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/georep/georep/node"
	gsync "github.com/georep/georep/sync"
)

// Failback states (SPEC §5).
const (
	FailbackNone       = "none"
	FailbackInProgress = "in-progress"
	FailbackCompleted  = "completed"
	FailbackCommitting = "committing"
)

// caughtUp is the lag within which a failback counts as completed: the
// continuous-replication target.
const caughtUp = time.Second

// FailbackStatus is a failback as the node that is to be primary sees it.
type FailbackStatus struct {
	State   string    `json:"state"`
	Primary string    `json:"primary,omitempty"` // the current primary's name
	Started time.Time `json:"started,omitzero"`
	// PendingEntries and PendingBytes are what the current primary has
	// still to ship to this node; Estimate how long that takes at the
	// recent rate (-1: unknown).
	PendingEntries uint64  `json:"pending_entries"`
	PendingBytes   uint64  `json:"pending_bytes"`
	LagSeconds     float64 `json:"lag_seconds"`
	Estimate       float64 `json:"estimate_seconds"`
	// Replication is the current primary's state of its link to this
	// node (connected, full-sync, syncing, in-sync).
	Replication string `json:"replication,omitempty"`
	// Compare counts paths this node still has to compare with the
	// primary (divergent ones among them).
	Compare int `json:"paths_to_compare,omitempty"`
	// Waiting says what the failback waits for, when it does.
	Waiting string     `json:"waiting,omitempty"`
	Last    *Committed `json:"last,omitempty"`
}

// FailbackStart makes this node, which is to be primary again, follow
// the current primary and catch up in the background (SPEC §4.17): its
// divergent writes are preserved as conflict copies when the primary's
// session begins (Join), then the primary's records since the fork and
// the divergent paths travel, while applications keep writing to the
// current primary.
func (c *Controller) FailbackStart(ctx context.Context) (*FailbackStatus, error) {
	c.trans.Lock()
	st := c.State()
	p, err := c.currentPrimary(&st)
	if err != nil {
		c.trans.Unlock()
		return nil, err
	}
	if st.Failback == nil || st.Failback.Primary != st.Primary {
		err = c.update(func(s *State) { s.Failback = &Failback{Started: time.Now().UTC(), Primary: s.Primary} })
	}
	c.trans.Unlock()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.progress = nil
	c.mu.Unlock()
	c.log.Info("failback started: following the primary until this node has caught up", "primary", p.Name)
	c.kick(ctx, p)
	fs := c.FailbackStatus(ctx)
	return &fs, nil
}

// currentPrimary is the primary this node follows, as a trusted peer.
func (c *Controller) currentPrimary(st *State) (node.Peer, error) {
	switch {
	case st.Role == gsync.RolePrimary:
		return node.Peer{}, errors.New("this node is the primary: failback runs on the node that is to become primary again")
	case st.Handover != nil:
		return node.Peer{}, fmt.Errorf("this node handed the primary role to %s and waits to learn whether it took it", st.Handover.ToName)
	case st.Primary == "":
		return node.Peer{}, errors.New("this node does not know the current primary yet: no peer has told it (is the primary's daemon running?)")
	}
	p, ok := c.eng.TrustedPeer(st.Primary)
	if !ok {
		return node.Peer{}, fmt.Errorf("the current primary (node %s) is not a trusted peer of this node: georep peer add", st.Primary)
	}
	return p, nil
}

// FailbackStatus reports the failback: in-progress until this node has
// caught up with the current primary to within the continuous lag, then
// completed (failback commit may run).
func (c *Controller) FailbackStatus(ctx context.Context) FailbackStatus {
	c.mu.Lock()
	st := c.st.clone()
	committing := c.committing
	c.mu.Unlock()
	fs := FailbackStatus{State: FailbackNone, Last: st.LastFailback, Estimate: -1}
	if committing {
		fs.State = FailbackCommitting
		return fs
	}
	if st.Failback == nil {
		return fs
	}
	fs.State, fs.Started = FailbackInProgress, st.Failback.Started
	p, err := c.currentPrimary(&st)
	if err != nil {
		fs.Waiting = err.Error()
		return fs
	}
	fs.Primary = p.Name
	ns := c.query(ctx, p)
	if !ns.Reachable || ns.View == nil {
		fs.Waiting = "the primary " + p.Name + " does not answer: " + ns.Error
		if ns.Reachable {
			fs.Waiting = "the primary " + p.Name + " does not ship to this node yet (is this node among its peers?)"
		}
		return fs
	}
	v := ns.View
	rs, _ := c.eng.Receiver().State()
	fs.PendingEntries, fs.PendingBytes, fs.LagSeconds, fs.Replication = v.PendingEntries, v.PendingBytes, v.LagSeconds, v.State
	fs.Compare = len(rs.Repair)
	fs.Estimate = c.estimate(float64(v.PendingBytes) + float64(v.PendingEntries)*512)
	live := v.State == gsync.StateInSync || v.State == gsync.StateSyncing
	switch {
	case st.Role != gsync.RoleSecondary:
		fs.Waiting = "the primary has not reached this node yet (it is " + st.Role + ")"
	case !live || v.Tree.Running:
		fs.Waiting = "the primary's link to this node is " + v.State
	case rs.Full || len(rs.Repair) > 0 || rs.Unsettled:
		fs.Waiting = "paths are being compared"
	case time.Duration(v.LagSeconds*float64(time.Second)) > caughtUp:
		fs.Waiting = "catching up"
		// A primary on a schedule ships when asked.
		go c.kick(c.lifetime(), p)
	default:
		fs.State, fs.Estimate = FailbackCompleted, 0
	}
	return fs
}

// sampleFailback records the pending work of a failback every second
// for the estimate.
func (c *Controller) sampleFailback(ctx context.Context) {
	c.mu.Lock()
	active := c.st.Failback != nil && !c.committing
	c.mu.Unlock()
	if active {
		c.FailbackStatus(ctx)
	}
}

// estimate records pending work and returns the seconds it takes at the
// rate it shrank over the last samples (-1: unknown).
func (c *Controller) estimate(pending float64) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.progress = append(c.progress, sample{now, pending})
	for len(c.progress) > 2 && now.Sub(c.progress[0].t) > 30*time.Second {
		c.progress = c.progress[1:]
	}
	if pending == 0 {
		return 0
	}
	first := c.progress[0]
	dt := now.Sub(first.t).Seconds()
	if dt < 0.5 || first.pending <= pending {
		return -1
	}
	return pending / ((first.pending - pending) / dt)
}
