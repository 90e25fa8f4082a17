package failover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	gsync "github.com/georep/georep/sync"
)

// Report is the outcome of a failover: the new epoch, where its records
// start, and what every peer said.
type Report struct {
	Node   string       `json:"node"`
	Epoch  uint64       `json:"epoch"`
	Start  uint64       `json:"start"`
	Forced bool         `json:"forced,omitempty"`
	Peers  []NodeStatus `json:"peers"`
	// Warnings are the checks --force overrode.
	Warnings []string `json:"warnings,omitempty"`
}

// ErrRefused wraps a failover refused by its checks (--force overrides).
var ErrRefused = errors.New("failover refused")

// Failover promotes this node (SPEC §4.15): it asks every reachable peer
// where it stands, refuses (unless forced) when the primary is still
// alive, when another secondary is ahead of this one, or when this
// replica is not a consistent copy, then takes epoch max+1, makes the
// journal continue from its cursor, makes the mount writable and ships
// to every peer. Secondaries follow the first time it reaches them; one
// that is ahead (forced) keeps what it has past the fork as conflict
// copies, and so does the old primary when it comes back.
func (c *Controller) Failover(ctx context.Context, force bool) (*Report, error) {
	c.trans.Lock()
	defer c.trans.Unlock()
	st := c.State()
	rs, _ := c.eng.Receiver().State()
	var warn []string
	check := func(msg string) error {
		if force {
			warn = append(warn, msg)
			return nil
		}
		return fmt.Errorf("%w: %s (--force promotes anyway)", ErrRefused, msg)
	}
	switch {
	case st.Role == gsync.RolePrimary:
		return nil, fmt.Errorf("this node is already the primary (epoch %d)", st.Epoch)
	case st.Handover != nil:
		if err := check(fmt.Sprintf("this node handed the primary role to %s in a failback commit and waits to learn whether it took it (if %s is gone for good, this takes the role back at a newer epoch)", st.Handover.ToName, st.Handover.ToName)); err != nil {
			return nil, err
		}
	case st.Role == gsync.RoleFenced:
		if err := check(fmt.Sprintf("this node is fenced: %s is the primary of epoch %d, and this node's writes since its last acknowledged batch are not on it", c.peerName(st.Primary), st.Epoch)); err != nil {
			return nil, err
		}
	case c.eng.Volume() == "":
		return nil, errors.New("this node never received the volume from a primary: there is nothing to promote")
	case rs.Full:
		if err := check("this replica's first full sync has not finished: it is not a copy of the primary yet"); err != nil {
			return nil, err
		}
	case len(rs.Repair) > 0 || rs.Unsettled:
		if err := check(fmt.Sprintf("this replica has %d paths still to compare with the primary", len(rs.Repair))); err != nil {
			return nil, err
		}
	}
	hist, seq, own := c.position()
	peers := c.queryPeers(ctx)
	epoch := c.State().Epoch
	if st.Handover != nil {
		// The node it handed over to may have taken that epoch.
		epoch = max(epoch, st.Handover.Epoch)
	}
	for _, p := range peers {
		if !p.Reachable {
			continue
		}
		epoch = max(epoch, p.Epoch)
		switch {
		case p.Role == gsync.RolePrimary && p.Epoch >= c.State().Epoch:
			if err := check(fmt.Sprintf("the primary %s is alive (epoch %d, seq %d): its writes since this node's seq %d would become conflict copies; for a planned switch run failback start and failback commit here", p.Name, p.Epoch, p.Seq, seq)); err != nil {
				return nil, err
			}
		case p.Role == gsync.RoleSecondary:
			if n := Ahead(hist, seq, p.History, p.Seq); n > 0 {
				if err := check(fmt.Sprintf("%s is ahead of this node by %d records (seq %d, this node %d): promote %s instead", p.Name, n, p.Seq, seq, p.Name)); err != nil {
					return nil, err
				}
			}
		}
	}
	epoch++
	// No batch may land once the promotion begins.
	c.setPromoting(true)
	defer c.setPromoting(false)
	if err := c.eng.Receiver().Preempt(ctx); err != nil {
		return nil, fmt.Errorf("stop receiving: %w", err)
	}
	if !own {
		rs, _ = c.eng.Receiver().State()
		hist, seq = rs.History, rs.Cursor
	}
	if err := c.becomePrimary(ctx, epoch, History(hist).With(epoch, seq, c.o.Self.ID), own, ""); err != nil {
		return nil, err
	}
	c.log.Warn("promoted: this node is the primary", "epoch", epoch, "start", seq, "forced", force, "warnings", strings.Join(warn, "; "))
	return &Report{Node: c.o.Self.Name, Epoch: epoch, Start: seq, Forced: force, Peers: peers, Warnings: warn}, nil
}

func (c *Controller) setPromoting(on bool) {
	c.mu.Lock()
	c.promoting = on
	c.mu.Unlock()
}

// becomePrimary makes this node the primary of epoch with history hist,
// whose last step starts where this node's data stands. A secondary's
// journal starts afresh at its cursor; an old primary's (own) continues.
// The role is persisted last: a crash before leaves the node what it was.
func (c *Controller) becomePrimary(ctx context.Context, epoch uint64, hist History, own bool, token string) error {
	start := hist[len(hist)-1].Start
	if own {
		if err := c.j.SetEpoch(epoch); err != nil {
			return err
		}
	} else if err := c.j.Reset(ctx, start, epoch); err != nil {
		return err
	}
	if err := c.eng.SetVolume(""); err != nil {
		return err
	}
	err := c.update(func(st *State) {
		st.Role, st.Epoch, st.Primary, st.Since = gsync.RolePrimary, epoch, c.o.Self.ID, time.Now().UTC()
		st.History, st.Handover, st.Failback = hist, nil, nil
		if token != "" {
			st.Promoted = token
		}
	})
	if err != nil {
		return err
	}
	c.mount.SetReadOnly(false)
	c.eng.StartShipping(c.lifetime())
	return nil
}

// lifetime is the context of work that outlives the request that began
// it (shipping after a promotion): Run's.
func (c *Controller) lifetime() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runCtx == nil {
		return context.Background()
	}
	return c.runCtx
}
