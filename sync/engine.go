package sync

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	gosync "sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/robfig/cron/v3"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/index"
	"github.com/georep/georep/journal"
	"github.com/georep/georep/node"
)

// Config configures an Engine.
type Config struct {
	Self     *node.Identity
	Cert     tls.Certificate
	StateDir string
	DB       *badger.DB
	Journal  *journal.Journal
	Index    *index.Index
	// Root is the descriptor of the backing dir.
	Root int
	// Primary: ship to every peer. Otherwise receive.
	Primary bool
	Source  Source // the primary's mount
	Sink    Sink   // a secondary's mount
	// Listen is the address peers connect to ("" listens nowhere).
	Listen string
	// Schedule is a cron spec; empty means continuous replication.
	Schedule string
	// PreSync, if set, runs before each scheduled or requested sync; a
	// failure skips that sync.
	PreSync func(ctx context.Context) error
	// PostApply, if set, runs on a secondary after each applied batch.
	PostApply func()
	Logger    *slog.Logger
}

// Engine is a node's replication: the shippers of a primary, the
// receiver of a secondary, and the listener peers connect to.
type Engine struct {
	cfg      Config
	log      *slog.Logger
	volume   string
	schedule cron.Schedule
	recv     *Receiver

	mu       gosync.Mutex
	shippers map[string]*shipper
	trimMu   gosync.Mutex
}

var keyVolume = []byte("vol/id")

// crashEnv names a crash point for tests: the receiver kills its process
// after applying that many records.
const crashEnv = "GEOREP_TEST_CRASH_AFTER_RECORDS"

// New prepares the engine. A primary gets its volume ID here, created on
// its first start.
func New(cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Engine{cfg: cfg, log: cfg.Logger.With("component", "sync"), shippers: map[string]*shipper{}}
	if cfg.Schedule != "" {
		s, err := cron.ParseStandard(cfg.Schedule)
		if err != nil {
			return nil, fmt.Errorf("bad --schedule %q: %w", cfg.Schedule, err)
		}
		e.schedule = s
	}
	if !cfg.Primary {
		r, err := NewReceiver(cfg.Root, cfg.DB, cfg.StateDir, cfg.Sink, cfg.Logger)
		if err != nil {
			return nil, err
		}
		r.PostApply = cfg.PostApply
		if n, err := strconv.Atoi(os.Getenv(crashEnv)); err == nil && n > 0 {
			r.crashAfter = n
		}
		e.recv = r
		st, _ := r.State()
		e.volume = st.Volume
		return e, nil
	}
	vol, err := e.loadVolume()
	if err != nil {
		return nil, err
	}
	e.volume = vol
	return e, nil
}

// loadVolume reads the volume ID, creating it on a primary's first start
// (or adopting the one it replicated as a secondary).
func (e *Engine) loadVolume() (string, error) {
	var vol string
	err := e.cfg.DB.Update(func(txn *badger.Txn) error {
		it, err := txn.Get(keyVolume)
		if err == nil {
			return it.Value(func(v []byte) error { vol = string(v); return nil })
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if rs, err := txn.Get(keyReplica); err == nil {
			var st ReplicaState
			if err := rs.Value(func(v []byte) error { return json.Unmarshal(v, &st) }); err != nil {
				return err
			}
			vol = st.Volume
		}
		if vol == "" {
			b := make([]byte, 16)
			rand.Read(b)
			vol = hex.EncodeToString(b)
		}
		return txn.Set(keyVolume, []byte(vol))
	})
	if err != nil {
		return "", fmt.Errorf("volume ID: %w", err)
	}
	return vol, nil
}

// Volume is the volume ID ("" on a secondary that never synced).
func (e *Engine) Volume() string {
	if e.recv != nil {
		st, _ := e.recv.State()
		return st.Volume
	}
	return e.volume
}

// Receiver is a secondary's receiver (nil on a primary).
func (e *Engine) Receiver() *Receiver { return e.recv }

// RecoverStaged redoes a batch a secondary staged but did not finish,
// in the backing dir at path root, before the replica is mounted.
func RecoverStaged(ctx context.Context, root string, db *badger.DB, stateDir string, log *slog.Logger) error {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open backing dir: %w", err)
	}
	defer unix.Close(fd)
	r, err := NewReceiver(fd, db, stateDir, nopSink{}, log)
	if err != nil {
		return err
	}
	if err := r.Recover(ctx); err != nil {
		return fmt.Errorf("redo the staged batch: %w", err)
	}
	return nil
}

// nopSink is the sink of a replica that is not mounted yet.
type nopSink struct{}

func (nopSink) BlockReads()                  {}
func (nopSink) UnblockReads()                {}
func (nopSink) Invalidate([]*journal.Record) {}

func (e *Engine) continuous() bool { return e.schedule == nil }

// Run serves until ctx ends: the listener, and on a primary a shipper per
// peer (peers added later are picked up).
func (e *Engine) Run(ctx context.Context) error {
	var wg gosync.WaitGroup
	defer wg.Wait()
	if e.cfg.Listen != "" {
		ln, err := net.Listen("tcp", e.cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", e.cfg.Listen, err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); e.serve(ctx, ln) }()
	}
	if !e.cfg.Primary {
		<-ctx.Done()
		return nil
	}
	if e.schedule != nil {
		wg.Add(1)
		go func() { defer wg.Done(); e.scheduled(ctx) }()
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if err := e.startShippers(ctx, &wg); err != nil {
			e.log.Error("read peers", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (e *Engine) startShippers(ctx context.Context, wg *gosync.WaitGroup) error {
	peers, err := node.Peers(e.cfg.StateDir)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range peers {
		if _, ok := e.shippers[p.ID]; ok {
			continue
		}
		s := &shipper{e: e, peer: p, log: e.log.With("peer", p.Name), kick: make(chan struct{}, 1),
			state: StateDisconnected, since: time.Now()}
		if rec, err := e.loadPeer(p.ID); err == nil {
			s.acked, s.lastSynced = rec.Acked, rec.LastSynced
		}
		e.shippers[p.ID] = s
		wg.Add(1)
		go func() { defer wg.Done(); s.run(ctx) }()
	}
	return nil
}

// scheduled runs the pre-sync hook and kicks every shipper at each time
// the schedule names.
func (e *Engine) scheduled(ctx context.Context) {
	for {
		next := e.schedule.Next(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		if err := e.preSync(ctx); err != nil {
			e.log.Error("pre-sync hook failed; skipping this scheduled sync", "err", err)
			continue
		}
		e.kickAll()
	}
}

func (e *Engine) preSync(ctx context.Context) error {
	if e.cfg.PreSync == nil {
		return nil
	}
	return e.cfg.PreSync(ctx)
}

func (e *Engine) kickAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.shippers {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// serve accepts peers' connections: TLS 1.3, both sides pinned by node
// ID, so an unknown peer fails in the handshake.
func (e *Engine) serve(ctx context.Context, ln net.Listener) {
	go func() { <-ctx.Done(); ln.Close() }()
	trust := func(id string) (node.Peer, bool) {
		peers, err := node.Peers(e.cfg.StateDir)
		if err != nil {
			e.log.Error("read peers", "err", err)
			return node.Peer{}, false
		}
		return TrustPeers(peers)(id)
	}
	conf := ServerConfig(e.cfg.Cert, trust)
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			e.log.Warn("accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go e.handle(ctx, raw, conf)
	}
}

func (e *Engine) handle(ctx context.Context, raw net.Conn, conf *tls.Config) {
	defer raw.Close()
	tc := tls.Server(raw, conf)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		e.log.Warn("refused a connection", "from", raw.RemoteAddr().String(), "err", err)
		return
	}
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()
	peerID := PeerID(tc.ConnectionState())
	log := e.log.With("from", raw.RemoteAddr().String(), "peer", peerID)
	c := NewConn(tc, idleTimeout)
	var h Hello
	if err := c.Expect(THello, &h); err != nil {
		log.Warn("bad hello", "err", err)
		return
	}
	err = e.dispatch(ctx, c, &h)
	if err != nil {
		log.Warn("session ended", "purpose", h.Purpose, "err", err)
		c.Send(TError, &ErrorMsg{Msg: oneLine(err)})
		c.Flush()
	}
}

func (e *Engine) dispatch(ctx context.Context, c *Conn, h *Hello) error {
	if h.Proto != Proto {
		return fmt.Errorf("protocol %d is not spoken here (%d is)", h.Proto, Proto)
	}
	if e.recv == nil {
		return errors.New("this node is a primary; it does not accept replication")
	}
	switch h.Purpose {
	case PurposeReplicate:
		return e.recv.serveReplicate(ctx, c, h)
	case PurposeVerify:
		return e.recv.serveVerify(ctx, c, h)
	}
	return protoErr("unknown purpose %q", h.Purpose)
}

func peerKey(id string) []byte { return []byte("sp/" + id) }

func (e *Engine) savePeer(id string, rec peerRecord) error {
	js, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return e.cfg.DB.Update(func(txn *badger.Txn) error { return txn.Set(peerKey(id), js) })
}

func (e *Engine) loadPeer(id string) (peerRecord, error) {
	var rec peerRecord
	err := e.cfg.DB.View(func(txn *badger.Txn) error {
		it, err := txn.Get(peerKey(id))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error { return json.Unmarshal(v, &rec) })
	})
	return rec, err
}

// trim deletes journal records every peer has acknowledged.
func (e *Engine) trim() {
	if !e.trimMu.TryLock() {
		return
	}
	defer e.trimMu.Unlock()
	peers, err := node.Peers(e.cfg.StateDir)
	if err != nil || len(peers) == 0 {
		return
	}
	low := e.cfg.Journal.Seq()
	for _, p := range peers {
		e.mu.Lock()
		s := e.shippers[p.ID]
		e.mu.Unlock()
		if s == nil {
			return
		}
		s.mu.Lock()
		low = min(low, s.acked)
		s.mu.Unlock()
	}
	if low > e.cfg.Journal.Trimmed() {
		if err := e.cfg.Journal.Trim(context.Background(), low); err != nil {
			e.log.Error("trim journal", "upto", low, "err", err)
		}
	}
}

// PeerStatus is one peer's replication state as a primary sees it.
type PeerStatus struct {
	Name           string       `json:"name"`
	Addr           string       `json:"addr"`
	ID             string       `json:"id"`
	State          string       `json:"state"`
	StateSince     time.Time    `json:"state_since"`
	AckedSeq       uint64       `json:"acked_seq"`
	LastSynced     time.Time    `json:"last_synced"`
	LagSeconds     float64      `json:"lag_seconds"`
	PendingEntries uint64       `json:"pending_entries"`
	PendingBytes   uint64       `json:"pending_bytes"`
	BytesShipped   int64        `json:"bytes_shipped"`
	Error          string       `json:"error,omitempty"`
	Tree           TreeProgress `json:"tree"`
}

// maxPendingScan bounds the records read to count pending bytes.
const maxPendingScan = 100_000

// Peers reports every peer's state (a primary's view).
func (e *Engine) Peers(ctx context.Context) []PeerStatus {
	e.mu.Lock()
	ss := make([]*shipper, 0, len(e.shippers))
	for _, s := range e.shippers {
		ss = append(ss, s)
	}
	e.mu.Unlock()
	slices.SortFunc(ss, func(a, b *shipper) int { return cmpStr(a.peer.Name, b.peer.Name) })
	j := e.cfg.Journal
	head := j.Seq()
	out := make([]PeerStatus, 0, len(ss))
	for _, s := range ss {
		s.mu.Lock()
		ps := PeerStatus{Name: s.peer.Name, Addr: s.peer.Addr, ID: s.peer.ID, State: s.state, StateSince: s.since,
			AckedSeq: s.acked, LastSynced: s.lastSynced, Error: s.lastErr, Tree: s.tree, BytesShipped: s.shipped}
		s.mu.Unlock()
		if head > ps.AckedSeq {
			ps.PendingEntries = head - ps.AckedSeq
			n := 0
			j.Since(ctx, ps.AckedSeq, func(r *journal.Record) bool {
				if n == 0 {
					ps.LagSeconds = time.Since(r.Time).Seconds()
				}
				for _, rg := range r.Ranges {
					ps.PendingBytes += uint64(rg[1])
				}
				n++
				return n < maxPendingScan
			})
		}
		out = append(out, ps)
	}
	return out
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Sync ships now: it runs the pre-sync hook, cuts write sessions and
// kicks every shipper. It returns the seq that every peer has once it is
// in sync with this call.
func (e *Engine) Sync(ctx context.Context) (uint64, error) {
	if !e.cfg.Primary {
		return 0, errors.New("this node is a secondary: run sync on the primary")
	}
	if err := e.preSync(ctx); err != nil {
		return 0, fmt.Errorf("pre-sync hook: %w", err)
	}
	if err := e.cfg.Source.Cut(); err != nil {
		return 0, err
	}
	target := e.cfg.Journal.Seq()
	e.kickAll()
	return target, nil
}
