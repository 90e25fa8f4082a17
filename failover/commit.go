package failover

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/georep/georep/node"
	gsync "github.com/georep/georep/sync"
)

// A failback commit hands the primary role from the current primary P to
// the node N that asked for it, which follows P and has caught up:
//
//  1. N asks P (commit). P freezes its mount: writers block.
//  2. P ships what its journal holds past N's cursor and waits for N's
//     acknowledgement: N has every record P has.
//  3. P persists a handover (a random token, N, the new epoch) and fences
//     itself: from here on it never takes writes again as primary of its
//     epoch unless it learns that N refused the token.
//  4. P sends promote(token, epoch+1, history). N persists itself primary
//     with the token, its journal continuing from its cursor, answers,
//     makes its mount writable and ships.
//  5. P, on the answer, persists itself N's secondary, makes its mount
//     read-only and thaws (blocked writers get EROFS: the volume is
//     written at N now), and reports the freeze time.
//
// Failures: before 3, P rolls back (thaws as primary) and says why. After
// 3 without an answer, P asks N about the token (resolve); N answers
// promoted, or records the token as aborted (so a promote arriving late
// is refused) and answers aborted, under the lock its promote takes. P
// rolls back on aborted, follows N on promoted, and while N cannot be
// reached it stays fenced and keeps asking. So at no point are there two
// primaries, and no write P acknowledged is missing from N.

// Commit deadlines.
const (
	finalDelta   = 10 * time.Second // P: the last batch reaches N
	promoteReply = 10 * time.Second // P: N answers the promote
	commitWait   = 60 * time.Second // N: the whole commit
)

// CommitReport is the outcome of a failback commit.
type CommitReport struct {
	Node   string        `json:"node"`
	Epoch  uint64        `json:"epoch"`
	Start  uint64        `json:"start"`
	From   string        `json:"from"`
	Freeze time.Duration `json:"freeze_ns"`
	// FreezeKnown is false when the old primary's last word was lost
	// (the commit took effect; its freeze time is not known here).
	FreezeKnown bool `json:"freeze_known"`
}

// FailbackCommit runs on the node that is to be primary once its failback
// is completed: it asks the current primary to hand the role over.
func (c *Controller) FailbackCommit(ctx context.Context) (*CommitReport, error) {
	c.trans.Lock()
	defer c.trans.Unlock()
	fs := c.FailbackStatus(ctx)
	switch fs.State {
	case FailbackNone:
		return nil, errors.New("no failback is in progress: run georep failback start first")
	case FailbackInProgress:
		why := fs.Waiting
		if why == "" {
			why = "catching up"
		}
		return nil, fmt.Errorf("failback is in progress (%s: %d entries, %d bytes pending): wait until failback status says completed", why, fs.PendingEntries, fs.PendingBytes)
	}
	st := c.State()
	p, err := c.currentPrimary(&st)
	if err != nil {
		return nil, err
	}
	c.setCommitting(true)
	defer c.setCommitting(false)
	cctx, cancel := context.WithTimeout(ctx, commitWait)
	defer cancel()
	conn, _, err := c.eng.Dial(cctx, p, gsync.PurposeCommit)
	if err != nil {
		return nil, fmt.Errorf("ask %s to hand over: %w", p.Name, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(cctx, func() { conn.Close() })
	defer stop()
	if err := send(conn, &Message{Kind: kindCommit}); err != nil {
		return nil, err
	}
	var report *CommitReport
	for {
		m, err := expect(conn)
		if err != nil {
			if report != nil {
				// Promoted; the old primary's last word was lost.
				c.log.Warn("failback committed; the old primary did not report its freeze time", "err", err)
				return report, nil
			}
			return nil, fmt.Errorf("failback commit: %w", err)
		}
		switch m.Kind {
		case kindPromote:
			if report != nil {
				return nil, errors.New("failback commit: a second promote")
			}
			perr := c.promoted(ctx, p, m)
			reply := &Message{Kind: kindPromoteReply}
			if perr != nil {
				reply.Error = perr.Error()
			}
			serr := send(conn, reply)
			switch {
			case perr != nil:
				return nil, fmt.Errorf("failback commit refused here: %w", perr)
			case serr != nil:
				// Promoted; the old primary learns it by asking (resolve).
				return &CommitReport{Node: c.o.Self.Name, Epoch: m.Epoch, Start: m.Start, From: p.Name}, nil
			}
			report = &CommitReport{Node: c.o.Self.Name, Epoch: m.Epoch, Start: m.Start, From: p.Name}
		case kindCommitDone:
			if m.Error != "" {
				if report != nil {
					return report, nil // promoted; P reports a late trouble
				}
				return nil, fmt.Errorf("%s did not hand over: %s", p.Name, m.Error)
			}
			if report == nil {
				return nil, errors.New("failback commit: done without a promote")
			}
			report.Freeze, report.FreezeKnown = time.Duration(m.Freeze), true
			err := c.update(func(st *State) {
				if st.LastFailback != nil {
					last := *st.LastFailback
					last.Freeze = report.Freeze
					st.LastFailback = &last
				}
			})
			if err != nil {
				c.log.Warn("record the freeze time", "err", err)
			}
			return report, nil
		default:
			return nil, fmt.Errorf("failback commit: unexpected %s message", m.Kind)
		}
	}
}

func (c *Controller) setCommitting(on bool) {
	c.mu.Lock()
	c.committing = on
	c.mu.Unlock()
}

// promoted takes the primary role P hands over with m, if this node has
// every record P has and the token was not given up meanwhile.
func (c *Controller) promoted(ctx context.Context, p node.Peer, m *Message) error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	st := c.State()
	switch {
	case slices.Contains(st.Aborted, m.Token):
		return errors.New("this commit was given up")
	case st.Role != gsync.RoleSecondary || st.Primary != p.ID:
		return fmt.Errorf("this node does not follow %s (it is %s)", p.Name, st.Role)
	case m.Epoch != st.Epoch+1:
		return fmt.Errorf("promote to epoch %d, this node is at %d", m.Epoch, st.Epoch)
	case m.History[len(m.History)-1].Primary != c.o.Self.ID:
		return errors.New("the promote names another node")
	}
	c.setPromoting(true)
	defer c.setPromoting(false)
	if err := c.eng.Receiver().Preempt(ctx); err != nil {
		return err
	}
	rs, _ := c.eng.Receiver().State()
	switch {
	case rs.Cursor != m.Start || rs.Full || len(rs.Repair) > 0 || rs.Unsettled:
		return fmt.Errorf("this node is not caught up: cursor %d, %s's seq %d, %d paths to compare", rs.Cursor, p.Name, m.Start, len(rs.Repair))
	case !slices.Equal(rs.History, m.History[:len(m.History)-1]):
		return errors.New("the promote's history is not the one this node follows")
	}
	c.crashPoint("promote-before-persist")
	if err := c.becomePrimary(ctx, m.Epoch, m.History, false, m.Token); err != nil {
		return err
	}
	err := c.update(func(st *State) {
		st.LastFailback = &Committed{Time: time.Now().UTC(), Epoch: m.Epoch, From: p.Name}
	})
	if err != nil {
		c.log.Warn("record the failback", "err", err)
	}
	c.log.Warn("failback committed: this node is the primary", "epoch", m.Epoch, "start", m.Start, "from", p.Name)
	c.crashPoint("promote-after-persist")
	return nil
}

// serveCommit runs on the current primary when the node p asks it to
// hand the primary role over (see the top of this file).
func (c *Controller) serveCommit(ctx context.Context, p node.Peer, conn *gsync.Conn, h *gsync.Hello) error {
	m, err := expect(conn)
	if err != nil {
		return err
	}
	if m.Kind != kindCommit {
		return fmt.Errorf("unexpected %s message", m.Kind)
	}
	done := func(err error) error {
		send(conn, &Message{Kind: kindCommitDone, Error: err.Error()})
		return err
	}
	if !c.trans.TryLock() {
		return done(errors.New("another role change is running on this node"))
	}
	defer c.trans.Unlock()
	st := c.State()
	if st.Role != gsync.RolePrimary {
		return done(fmt.Errorf("%s is not the primary", c.o.Self.Name))
	}
	if _, _, ok := c.eng.Acked(p.ID); !ok {
		return done(fmt.Errorf("%s does not ship to %s", c.o.Self.Name, p.Name))
	}
	t0 := time.Now()
	if err := c.mount.Freeze(ctx); err != nil {
		return done(fmt.Errorf("freeze: %w", err))
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			c.mount.Thaw()
		}
	}
	defer thaw()
	c.log.Info("failback commit: mount frozen; shipping the last batch", "to", p.Name)
	c.crashPoint("commit-frozen")
	target, err := c.finalDelta(ctx, p)
	if err != nil {
		return done(err)
	}
	token := newToken()
	epoch := st.Epoch + 1
	hist := st.History.With(epoch, target, p.ID)
	ho := &Handover{Token: token, To: p.ID, ToName: p.Name, Epoch: epoch, Start: target, History: hist}
	if err := c.update(func(s *State) { s.Role, s.Handover, s.Since = gsync.RoleFenced, ho, time.Now().UTC() }); err != nil {
		return done(err)
	}
	// From here this node is no primary until it knows what became of
	// the token.
	c.mount.SetReadOnly(true)
	c.eng.StopShipping()
	c.crashPoint("commit-handover")
	err = send(conn, &Message{Kind: kindPromote, Token: token, Epoch: epoch, Start: target, History: hist})
	var reply *Message
	if err == nil {
		c.crashPoint("commit-promote-sent")
		rctx, cancel := context.WithTimeout(ctx, promoteReply)
		stop := context.AfterFunc(rctx, func() { conn.Close() })
		reply, err = expect(conn)
		stop()
		cancel()
	}
	outcome := outcomePromoted
	switch {
	case err == nil && reply.Kind == kindPromoteReply && reply.Error == "":
	case err == nil && reply.Kind == kindPromoteReply:
		// N refused the token: nothing changed there.
		outcome, err = outcomeAborted, errors.New(reply.Error)
	default:
		if err == nil {
			err = fmt.Errorf("unexpected %s message", reply.Kind)
		}
		c.log.Warn("failback commit: no answer to the promote; asking what became of it", "to", p.Name, "err", err)
		outcome = c.resolve(ctx, p, token, 5*time.Second)
	}
	switch outcome {
	case outcomeAborted:
		if rerr := c.rollback(ctx, ho); rerr != nil {
			return done(fmt.Errorf("%v; and the rollback failed: %w", err, rerr))
		}
		thaw()
		c.log.Warn("failback commit rolled back: this node is the primary again", "err", err, "froze", time.Since(t0))
		return done(fmt.Errorf("%s refused the role: %w", p.Name, err))
	case outcomePromoted:
		if err := c.handedOver(ho); err != nil {
			c.log.Error("failback commit: record the handover", "err", err)
		}
		thaw()
		freeze := time.Since(t0)
		c.log.Warn("failback committed: this node follows the new primary", "primary", p.Name, "epoch", epoch, "freeze", freeze)
		c.crashPoint("commit-after-handover")
		send(conn, &Message{Kind: kindCommitDone, Token: token, Freeze: int64(freeze)})
		return nil
	}
	// Unknown: stay fenced (writers get EROFS) and keep asking.
	thaw()
	go c.resolveLoop(c.lifetime())
	return done(fmt.Errorf("no answer from %s: this node stays fenced until %s says whether it took the role", p.Name, p.Name))
}

// finalDelta ships, with the mount frozen, everything the journal holds
// to p and waits for p's acknowledgement; it returns the seq p now has.
func (c *Controller) finalDelta(ctx context.Context, p node.Peer) (uint64, error) {
	if err := c.mount.Cut(); err != nil {
		return 0, err
	}
	if err := c.j.Flush(ctx); err != nil {
		return 0, err
	}
	target := c.j.Seq()
	c.eng.Kick(p.ID)
	deadline := time.Now().Add(finalDelta)
	for {
		acked, live, ok := c.eng.Acked(p.ID)
		if !ok {
			return 0, fmt.Errorf("%s does not ship to %s any more", c.o.Self.Name, p.Name)
		}
		if acked >= target && live {
			return target, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the last batch did not reach %s within %s (it has seq %d of %d)", p.Name, finalDelta, acked, target)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// handedOver makes this node, which handed the role over with ho, a
// secondary of the new primary: its data is the new history up to the
// handover's start. A handover already resolved by the new primary's
// claim (Observe) is left to that primary's session to join.
func (c *Controller) handedOver(ho *Handover) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.Handover == nil || c.st.Handover.Token != ho.Token {
		return nil
	}
	rs, _ := c.eng.Receiver().State()
	st := c.st.clone()
	st.Role, st.Epoch, st.Primary, st.Since = gsync.RoleSecondary, ho.Epoch, ho.To, time.Now().UTC()
	st.Handover, st.History = nil, nil
	next := gsync.ReplicaState{Volume: rs.Volume, Cursor: ho.Start, History: ho.History, RLFrom: ho.Start, Applied: time.Now()}
	if err := c.eng.Receiver().Rebase(next, st.put); err != nil {
		return err
	}
	c.st = st
	return nil
}

// rollback makes this node the primary again after a handover that did
// not happen, unless a newer epoch arrived meanwhile (then it stays
// fenced, and joins that epoch's primary when it comes).
func (c *Controller) rollback(ctx context.Context, ho *Handover) error {
	err := c.update(func(st *State) {
		if st.Handover == nil || st.Handover.Token != ho.Token {
			return
		}
		st.Handover, st.Since = nil, time.Now().UTC()
		if st.Epoch < ho.Epoch && st.Primary == c.o.Self.ID {
			st.Role = gsync.RolePrimary
		}
	})
	if err != nil {
		return err
	}
	if c.Role() != gsync.RolePrimary {
		return errors.New("a newer epoch arrived meanwhile: this node stays fenced")
	}
	c.mount.SetReadOnly(false)
	c.eng.StartShipping(c.lifetime())
	return nil
}

// resolve asks p what became of token until it answers or wait passes
// ("" when it did not).
func (c *Controller) resolve(ctx context.Context, p node.Peer, token string, wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		rctx, cancel := context.WithTimeout(ctx, queryWait)
		outcome, err := c.askResolve(rctx, p, token)
		cancel()
		if err == nil {
			return outcome
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.log.Warn("cannot learn what became of a failback commit", "to", p.Name, "err", err)
			return ""
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *Controller) askResolve(ctx context.Context, p node.Peer, token string) (string, error) {
	conn, _, err := c.eng.Dial(ctx, p, gsync.PurposeResolve)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := send(conn, &Message{Kind: kindResolve, Token: token}); err != nil {
		return "", err
	}
	m, err := expect(conn)
	if err != nil {
		return "", err
	}
	if m.Kind != kindResolved || m.Outcome == "" {
		return "", fmt.Errorf("unexpected %s message", m.Kind)
	}
	return m.Outcome, nil
}

// resolveLoop runs on a node fenced by a handover whose outcome it does
// not know, until it learns it (from the new primary, or from any claim
// showing that node as primary of the new epoch, see Observe).
func (c *Controller) resolveLoop(ctx context.Context) {
	for {
		ho := c.State().Handover
		if ho == nil {
			return
		}
		p, ok := c.eng.TrustedPeer(ho.To)
		if ok {
			rctx, cancel := context.WithTimeout(ctx, queryWait)
			outcome, err := c.askResolve(rctx, p, ho.Token)
			cancel()
			switch {
			case err != nil:
				c.log.Info("still waiting to learn whether the failback commit took effect", "to", ho.ToName, "err", err)
			case outcome == outcomePromoted:
				if err := c.handedOver(ho); err != nil {
					c.log.Error("record the handover", "err", err)
					break
				}
				c.log.Warn("the failback commit took effect: this node follows the new primary", "primary", ho.ToName)
				return
			case outcome == outcomeAborted:
				if err := c.rollback(ctx, ho); err != nil {
					c.log.Error("roll a failback commit back", "err", err)
					return
				}
				c.log.Warn("the failback commit did not take effect: this node is the primary again", "epoch", c.State().Epoch)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// serveResolve answers the old primary asking what became of a commit
// token: promoted if this node took the role with it; otherwise the token
// is recorded as given up (a promote arriving later is refused) and the
// answer is aborted.
func (c *Controller) serveResolve(ctx context.Context, p node.Peer, conn *gsync.Conn, h *gsync.Hello) error {
	m, err := expect(conn)
	if err != nil {
		return err
	}
	if m.Kind != kindResolve {
		return fmt.Errorf("unexpected %s message", m.Kind)
	}
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	outcome := outcomeAborted
	if c.State().Promoted == m.Token {
		outcome = outcomePromoted
	} else {
		err := c.update(func(st *State) {
			if !slices.Contains(st.Aborted, m.Token) {
				st.Aborted = append(st.Aborted, m.Token)
			}
			if len(st.Aborted) > maxAborted {
				st.Aborted = st.Aborted[len(st.Aborted)-maxAborted:]
			}
		})
		if err != nil {
			return err
		}
	}
	c.log.Info("told the old primary what became of a failback commit", "peer", p.Name, "outcome", outcome)
	return send(conn, &Message{Kind: kindResolved, Token: m.Token, Outcome: outcome})
}

func newToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
