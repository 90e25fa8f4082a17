package failover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/georep/georep/journal"
	"github.com/georep/georep/node"
	gsync "github.com/georep/georep/sync"
)

// conflictsDir is where conflict copies go in the backing dir, under
// georep's own dir: invisible through the mount and never replicated.
const conflictsDir = gsync.HiddenDir + "/conflicts"

// Join brings this node onto the history of the primary claiming cl,
// before that primary's replication session starts (sync.Roles; the
// receiver's session is held). What this node holds past the fork of the
// two histories is divergent: its own journal's records after the fork
// (an old primary's writes no secondary acknowledged) or the received
// records after it (a secondary that applied batches of a deposed
// primary). The paths those records touched, followed through their
// renames, are copied to .georep/conflicts/<epoch>/ and become paths the
// primary compares and ships; the replica's cursor becomes the fork.
func (c *Controller) Join(ctx context.Context, peer node.Peer, cl *gsync.Claim) error {
	c.mu.Lock()
	st := c.st.clone()
	c.mu.Unlock()
	recv := c.eng.Receiver()
	rs, _ := recv.State()
	own := st.Role != gsync.RoleSecondary // an old primary: its journal
	hist, seq := rs.History, rs.Cursor
	if own {
		// Writes still in flight when it was fenced have finished and
		// their sessions are named before anything is read.
		if err := c.mount.Fence(ctx); err != nil {
			return err
		}
		hist, seq = st.History, c.j.Seq()
	}
	primary := History(cl.History)
	switch {
	case !own && (rs.Full || len(rs.History) == 0):
		// A replica never made a copy of any history (or kept none,
		// before histories were kept): nothing of it can diverge.
		if slices.Equal(rs.History, cl.History) {
			return nil
		}
		rs.History = cl.History
		return recv.Rebase(rs, nil)
	case !own && Fork(hist, seq, primary, cl.Seq) == seq:
		// A prefix of the primary's history: follow it as it grows.
		if slices.Equal(rs.History, cl.History) {
			return nil
		}
		rs.History = cl.History
		return recv.Rebase(rs, nil)
	}
	fork := Fork(hist, seq, primary, cl.Seq)
	divergent, epoch, err := c.divergent(ctx, own, fork, seq, rs)
	if err != nil {
		return err
	}
	var set *ConflictSet
	if divergent.Len() > 0 {
		if set, err = c.preserve(divergent, epoch, fork, peer, cl.Epoch); err != nil {
			return err
		}
	}
	next := gsync.ReplicaState{Volume: rs.Volume, Cursor: fork, History: cl.History, RLFrom: fork, Applied: rs.Applied}
	if !own {
		// The received log still holds the records up to the fork; the
		// paths a comparison was owed stay owed.
		next.RLFrom, next.Repair, next.Unsettled = min(rs.RLFrom, fork), rs.Repair, rs.Unsettled
	}
	next.Repair = gsync.NewPathSet(append(next.Repair, divergent.List()...)...).List()
	c.mu.Lock()
	defer c.mu.Unlock()
	st = c.st.clone()
	st.Role, st.Since, st.History = gsync.RoleSecondary, time.Now().UTC(), nil
	if set != nil {
		st.Conflicts = append(st.Conflicts, *set)
		if len(st.Conflicts) > maxConflictSets {
			st.Conflicts = st.Conflicts[len(st.Conflicts)-maxConflictSets:]
		}
	}
	err = recv.Rebase(next, st.put)
	if err != nil {
		return err
	}
	c.st = st
	if own {
		// Its journal described what it did as primary; what is past the
		// fork is in the conflict copies now, the rest is the history.
		if err := c.j.Reset(ctx, fork, st.Epoch); err != nil {
			c.log.Warn("empty the old journal", "err", err)
		}
	}
	c.log.Info("joined the primary's history", "primary", peer.Name, "epoch", cl.Epoch, "fork", fork,
		"was", seq, "divergent_paths", divergent.Len())
	return nil
}

// divergent names the paths this node changed past fork, up to seq (its
// own journal's records when own, else its received log's), as they are
// named now, and the epoch those changes were made in. When the records
// are not all there any more, the whole volume ("") is divergent.
func (c *Controller) divergent(ctx context.Context, own bool, fork, seq uint64, rs gsync.ReplicaState) (*gsync.PathSet, uint64, error) {
	set := gsync.NewPathSet()
	var epoch uint64
	follow := func(r *journal.Record) bool {
		if r.Seq > seq {
			return false
		}
		set.Follow(r)
		epoch = max(epoch, r.Epoch)
		return true
	}
	var err error
	switch {
	case seq <= fork:
		return set, 0, nil
	case own && c.j.Trimmed() <= fork:
		if err = c.j.Flush(ctx); err == nil {
			err = c.j.Since(ctx, fork, follow)
		}
	case !own && rs.RLFrom <= fork:
		err = c.eng.Receiver().ReceivedSince(ctx, fork, follow)
	default:
		c.log.Warn("the records past the fork are not all kept: the whole volume is preserved as conflict copies", "fork", fork)
		set.Add("")
		epoch = c.State().Epoch
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read the records past seq %d: %w", fork, err)
	}
	return set, epoch, nil
}

// preserve copies the divergent paths into the conflict dir of epoch.
func (c *Controller) preserve(set *gsync.PathSet, epoch, fork uint64, peer node.Peer, joined uint64) (*ConflictSet, error) {
	dir := conflictsDir + "/" + strconv.FormatUint(epoch, 10)
	cs := &ConflictSet{Epoch: epoch, Dir: dir, Time: time.Now().UTC(), Fork: fork, Primary: peer.Name, Joined: joined}
	paths := set.List()
	slices.Sort(paths)
	for _, p := range paths {
		to := dir
		if p != "" {
			to += "/" + p
		}
		// The whole volume: every file. Else only the entry: a
		// directory's divergent contents are divergent paths too.
		ok, err := gsync.CopyEntry(c.root, p, to, p == "", c.log)
		if err != nil {
			if errors.Is(err, gsync.ErrBadPath) {
				c.log.Warn("not preserving a path that cannot be resolved beneath the backing dir", "path", p, "err", err)
				continue
			}
			return nil, fmt.Errorf("preserve %q as a conflict copy: %w", p, err)
		}
		if !ok {
			continue
		}
		cs.Count++
		if len(cs.Paths) < maxConflictPaths {
			cs.Paths = append(cs.Paths, p)
		}
	}
	c.log.Warn("divergent changes preserved as conflict copies", "dir", dir, "copies", cs.Count, "fork", fork)
	return cs, nil
}
