package main

import (
	"net/http"
	"os"

	"github.com/georep/georep/failover"
	"github.com/georep/georep/journal"
	"github.com/georep/georep/node"
	gsync "github.com/georep/georep/sync"
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
		rep, err := d.ctl.Failover(r.Context(), r.URL.Query().Get("force") == "1")
		if err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("POST /v1/failback/start", func(w http.ResponseWriter, r *http.Request) {
		fs, err := d.ctl.FailbackStart(r.Context())
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
		rep, err := d.ctl.FailbackCommit(r.Context())
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
	cl := d.ctl.Claim()
	st := Status{
		Node: d.id.Name, ID: d.id.ID, Role: cl.Role, Epoch: cl.Epoch, Seq: cl.Seq,
		Mount: d.mount, Backing: d.backing, PID: os.Getpid(), Volume: d.eng.Volume(), Mode: d.mode,
		Primary: cl.Primary, RoleSince: rfc3339(cl.Since),
		Peers: []PeerStatus{}, Hooks: d.hooks.status(), Conflicts: d.ctl.Conflicts(),
	}
	if cl.Role != gsync.RolePrimary {
		rs, tree := d.eng.Receiver().State()
		st.Replica = &ReplicaStatus{CursorEpoch: failover.History(rs.History).EpochAt(rs.Cursor), Cursor: rs.Cursor,
			Applied: rfc3339(rs.Applied), Full: rs.Full, Repair: len(rs.Repair)}
		if tree.Running {
			st.Replica.FullSync = &tree
		}
	}
	if st.Primary != "" {
		if p, ok := d.eng.TrustedPeer(st.Primary); ok {
			st.Primary = p.Name
		} else if st.Primary == d.id.ID {
			st.Primary = d.id.Name
		}
	}
	for _, p := range d.eng.Peers(r.Context()) {
		ps := PeerStatus{Name: p.Name, Addr: p.Addr, State: p.State, StateSince: rfc3339(p.StateSince),
			AckedSeq: p.AckedSeq, LastSynced: rfc3339(p.LastSynced), LagSeconds: p.LagSeconds,
			PendingEntries: p.PendingEntries, PendingBytes: p.PendingBytes, BytesShipped: p.BytesShipped, Error: p.Error}
		if p.Tree.Running {
			tree := p.Tree
			ps.FullSync = &tree
		}
		st.Peers = append(st.Peers, ps)
	}
	st.Failback = d.ctl.FailbackStatus(r.Context())
	if r.URL.Query().Get("nodes") == "1" {
		st.Nodes = d.ctl.Nodes(r.Context())
	}
	return st
}
