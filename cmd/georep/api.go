package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/failover"
	"github.com/georep/georep/journal"
	"github.com/georep/georep/node"
	gsync "github.com/georep/georep/sync"
	"github.com/georep/georep/web"
)

// daemonState is what the daemon's control API reports and acts on.
type daemonState struct {
	id             *node.Identity
	backing, mount string
	mode           string
	journal        *journal.Journal
	eng            *gsync.Engine
	ctl            *failover.Controller
	hooks          *hooks
	pid            int
	httpURL        string // the status page, when served
}

// mux is the control API (HTTP over the state dir's Unix socket). GETs
// report; every change of state is a POST.
func (d *daemonState) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.status(r))
	})
	mux.HandleFunc("GET /v1/journal", serveJournal(d.journal))
	mux.HandleFunc("POST /v1/sync", func(w http.ResponseWriter, r *http.Request) {
		target, err := d.eng.Sync(r.Context())
		if err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]uint64{"target": target})
	})
	mux.HandleFunc("GET /v1/verify", func(w http.ResponseWriter, r *http.Request) {
		diffs, err := d.eng.Verify(r.Context(), r.URL.Query().Get("peer"))
		if err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, diffs)
	})
	mux.HandleFunc("POST /v1/failover", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := actionContext(r.Context())
		defer cancel()
		rep, err := d.ctl.Failover(ctx, r.URL.Query().Get("force") == "1")
		if err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("POST /v1/failback/start", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := actionContext(r.Context())
		defer cancel()
		fs, err := d.ctl.FailbackStart(ctx)
		if err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, fs)
	})
	mux.HandleFunc("GET /v1/failback", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.ctl.FailbackStatus(r.Context()))
	})
	mux.HandleFunc("POST /v1/failback/commit", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := actionContext(r.Context())
		defer cancel()
		rep, err := d.ctl.FailbackCommit(ctx)
		if err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	return mux
}

// status is the reply of GET /v1/status; ?nodes=1 adds every node's
// claim, asked of the peers now.
func (d *daemonState) status(r *http.Request) Status {
	return d.statusOf(d.Snapshot(r.Context(), r.URL.Query().Get("nodes") == "1"))
}

// Snapshot gathers what the daemon reports (web.Backend): the CLI's
// status and the web page and metrics are all rendered from it.
func (d *daemonState) Snapshot(ctx context.Context, nodes bool) *web.Page {
	cl := d.ctl.Claim()
	p := &web.Page{
		Node: d.id.Name, ID: d.id.ID, Role: cl.Role, Epoch: cl.Epoch, Seq: cl.Seq, Primary: cl.Primary,
		RoleSince: cl.Since, Mount: d.mount, Backing: d.backing, Mode: d.mode, Volume: d.eng.Volume(),
		Conflicts: d.ctl.Conflicts(), Hooks: d.hooks.page(), Counters: d.eng.Counters(),
	}
	if cl.Role != gsync.RolePrimary {
		rs, tree := d.eng.Receiver().State()
		p.Replica = &web.Replica{CursorEpoch: failover.History(rs.History).EpochAt(rs.Cursor), Cursor: rs.Cursor,
			Applied: rs.Applied, InLine: rs.InLine, NeedsFullSync: rs.Full, PathsToCompare: len(rs.Repair)}
		if tree.Running {
			p.Replica.FullSync = &tree
		}
	}
	if p.Primary != "" {
		if peer, ok := d.eng.TrustedPeer(p.Primary); ok {
			p.Primary = peer.Name
		} else if p.Primary == d.id.ID {
			p.Primary = d.id.Name
		}
	}
	p.Peers = d.eng.Peers(ctx)
	p.Failback = d.ctl.FailbackStatus(ctx)
	if nodes {
		p.Nodes = d.ctl.Nodes(ctx)
	}
	return p
}

// statusOf renders a snapshot as `georep status --json` shows it.
func (d *daemonState) statusOf(p *web.Page) Status {
	st := Status{
		Node: p.Node, ID: p.ID, Role: p.Role, Epoch: p.Epoch, Seq: p.Seq, Mount: p.Mount, Backing: p.Backing,
		PID: d.pid, HTTP: d.httpURL, Mode: p.Mode, Volume: p.Volume, Primary: p.Primary, RoleSince: rfc3339(p.RoleSince), Peers: []PeerStatus{},
		Hooks:    HookStatus{PreSync: p.Hooks.PreSync, PostApply: p.Hooks.PostApply, LastError: p.Hooks.LastError, Log: p.Hooks.Log},
		Failback: p.Failback, Conflicts: p.Conflicts, Nodes: p.Nodes,
	}
	if r := p.Replica; r != nil {
		st.Replica = &ReplicaStatus{CursorEpoch: r.CursorEpoch, Cursor: r.Cursor, Applied: rfc3339(r.Applied),
			ValidAsOf: rfc3339(r.ValidAsOf()),
			Full:      r.NeedsFullSync, Repair: r.PathsToCompare, FullSync: r.FullSync}
	}
	for _, ps := range p.Peers {
		out := PeerStatus{Name: ps.Name, Addr: ps.Addr, State: ps.State, StateSince: rfc3339(ps.StateSince),
			AckedSeq: ps.AckedSeq, LastSynced: rfc3339(ps.LastSynced), LagSeconds: ps.LagSeconds,
			PendingEntries: ps.PendingEntries, PendingBytes: ps.PendingBytes, BytesShipped: ps.BytesShipped, Error: ps.Error}
		if ps.Tree.Running {
			tree := ps.Tree
			out.FullSync = &tree
		}
		st.Peers = append(st.Peers, out)
	}
	return st
}

// Health is what /healthz reports (web.Backend): the mount must answer
// statfs as a FUSE file system within 2s, and with maxLag no peer may lag
// further (the rule of status --max-lag).
func (d *daemonState) Health(ctx context.Context, maxLag time.Duration) string {
	if err := mountAnswers(ctx, d.mount); err != nil {
		return err.Error()
	}
	if maxLag > 0 {
		st := d.statusOf(d.Snapshot(ctx, false))
		return lagCrossed(&st, maxLag, time.Now())
	}
	return ""
}

// fuseMagic is statfs's f_type of a FUSE file system.
const fuseMagic = 0x65735546

// mountAnswers checks that the mount point is a live FUSE mount.
func mountAnswers(ctx context.Context, mnt string) error {
	done := make(chan error, 1)
	go func() {
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			done <- fmt.Errorf("the mount %s does not answer: %w", mnt, err)
			return
		}
		if st.Type != fuseMagic {
			done <- fmt.Errorf("%s is not mounted (file system type %#x)", mnt, st.Type)
			return
		}
		done <- nil
	}()
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("the mount %s does not answer statfs within 2s", mnt)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Takeover runs failover start (web.Backend).
func (d *daemonState) Takeover(ctx context.Context) (*failover.Report, error) {
	ctx, cancel := actionContext(ctx)
	defer cancel()
	return d.ctl.Failover(ctx, false)
}

// FailbackCommit runs failback commit (web.Backend).
func (d *daemonState) FailbackCommit(ctx context.Context) (*failover.CommitReport, error) {
	ctx, cancel := actionContext(ctx)
	defer cancel()
	return d.ctl.FailbackCommit(ctx)
}

// actionTimeout bounds a role change asked for by a request.
const actionTimeout = 5 * time.Minute

// actionContext is the context of a role change a request asked for: it
// does not end when the asker goes away (Ctrl-C on the CLI, a closed
// browser tab), so a promotion or commit is never cut off half-way by
// that; it is bounded by actionTimeout.
func actionContext(req context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(req), actionTimeout)
}
