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
	"sync/atomic"
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
	Root   int
	Source Source // the mount, for shipping while primary
	Sink   Sink   // the mount, for applying while secondary
	// Roles decides who may replicate to this node (package failover).
	Roles Roles
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

// Handler serves a connection opened for one of the failover package's
// purposes, after the engine answered its Hello with a Welcome.
type Handler func(ctx context.Context, peer node.Peer, c *Conn, h *Hello) error

// Engine is a node's replication: the listener peers connect to, the
// receiver that applies what a primary sends, and, while this node is the
// primary, a shipper per peer. Which of the two roles it plays is the
// failover package's to switch (StartShipping, StopShipping).
type Engine struct {
	cfg      Config
	log      *slog.Logger
	schedule cron.Schedule
	recv     *Receiver
	handlers map[string]Handler

	volMu  gosync.Mutex
	volume string

	mu       gosync.Mutex
	shippers map[string]*shipper
	// shipCtx is the shippers' context, shipCancel ends them and shipWG
	// counts them, per StartShipping; all nil while not shipping.
	shipCtx    context.Context
	shipCancel context.CancelFunc
	shipWG     *gosync.WaitGroup
	wake       chan struct{}
	trimMu     gosync.Mutex
	// low is the seq every peer has acknowledged (BatchBegin.Trim).
	low atomic.Uint64
	// counts are the totals since start (Counters).
	counts counters
	// ping is how often an idle session is pinged.
	ping time.Duration
}

var keyVolume = []byte("vol/id")

// crashEnv names a crash point for tests: the receiver kills its process
// after applying that many records.
const crashEnv = "GEOREP_TEST_CRASH_AFTER_RECORDS"

// keepJournalEnv, set, keeps every journal record (no trimming), so a test
// that fails can show the whole history.
const keepJournalEnv = "GEOREP_TEST_KEEP_JOURNAL"

// New prepares the engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Roles == nil {
		return nil, errors.New("sync engine without roles")
	}
	e := &Engine{cfg: cfg, log: cfg.Logger.With("component", "sync"), shippers: map[string]*shipper{},
		handlers: map[string]Handler{}, wake: make(chan struct{}, 1)}
	if cfg.Schedule != "" {
		s, err := cron.ParseStandard(cfg.Schedule)
		if err != nil {
			return nil, fmt.Errorf("bad --schedule %q: %w", cfg.Schedule, err)
		}
		e.schedule = s
	}
	r, err := NewReceiver(cfg.Root, cfg.DB, cfg.StateDir, cfg.Sink, cfg.Logger)
	if err != nil {
		return nil, err
	}
	r.PostApply = cfg.PostApply
	r.roles = cfg.Roles
	r.counts = &e.counts
	e.ping = pingInterval
	if d, err := time.ParseDuration(os.Getenv(pingEnv)); err == nil && d > 0 && d < idleTimeout {
		e.ping = d
	}
	if n, err := strconv.Atoi(os.Getenv(crashEnv)); err == nil && n > 0 {
		r.crashAfter = n
	}
	e.recv = r
	if e.volume, err = e.loadVolume(); err != nil {
		return nil, err
	}
	return e, nil
}

// loadVolume reads the volume ID ("" on a node that never held one).
func (e *Engine) loadVolume() (string, error) {
	var vol string
	err := e.cfg.DB.View(func(txn *badger.Txn) error {
		it, err := txn.Get(keyVolume)
		if err == nil {
			return it.Value(func(v []byte) error { vol = string(v); return nil })
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		st, _ := e.recv.State() // a replica of an older release kept it there
		vol = st.Volume
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("volume ID: %w", err)
	}
	return vol, nil
}

// Volume is the volume ID ("" on a secondary that never synced).
func (e *Engine) Volume() string {
	e.volMu.Lock()
	defer e.volMu.Unlock()
	return e.volume
}

// SetVolume makes this node's volume ID vol if it has none yet; "" makes
// a new one (the first primary of a volume).
func (e *Engine) SetVolume(vol string) error {
	e.volMu.Lock()
	defer e.volMu.Unlock()
	if e.volume != "" {
		return nil
	}
	if vol == "" {
		b := make([]byte, 16)
		rand.Read(b)
		vol = hex.EncodeToString(b)
	}
	if err := e.cfg.DB.Update(func(txn *badger.Txn) error { return txn.Set(keyVolume, []byte(vol)) }); err != nil {
		return fmt.Errorf("persist volume ID: %w", err)
	}
	e.volume = vol
	return nil
}

// Receiver is the node's receiver.
func (e *Engine) Receiver() *Receiver { return e.recv }

// Handle serves connections opened for purpose with h.
func (e *Engine) Handle(purpose string, h Handler) { e.handlers[purpose] = h }

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

// Run serves until ctx ends: the listener, the schedule, and the
// shippers while this node ships (peers added later are picked up).
func (e *Engine) Run(ctx context.Context) error {
	var wg gosync.WaitGroup
	defer wg.Wait()
	defer e.StopShipping()
	if e.cfg.Listen != "" {
		ln, err := net.Listen("tcp", e.cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", e.cfg.Listen, err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); e.serve(ctx, ln) }()
	}
	if e.schedule != nil {
		wg.Add(1)
		go func() { defer wg.Done(); e.scheduled(ctx) }()
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if err := e.startShippers(); err != nil {
			e.log.Error("read peers", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-e.wake:
		}
	}
}

// StartShipping makes this node ship to every peer (it became primary).
func (e *Engine) StartShipping(ctx context.Context) {
	e.mu.Lock()
	if e.shipCancel == nil {
		sctx, cancel := context.WithCancel(ctx)
		e.shipCtx, e.shipCancel, e.shipWG = sctx, cancel, new(gosync.WaitGroup)
		e.mu.Unlock()
		if err := e.startShippersCtx(sctx); err != nil {
			e.log.Error("read peers", "err", err)
		}
	} else {
		e.mu.Unlock()
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// StopShipping ends every shipper and returns once they have stopped.
func (e *Engine) StopShipping() {
	e.mu.Lock()
	cancel, wg := e.shipCancel, e.shipWG
	e.shipCtx, e.shipCancel, e.shipWG = nil, nil, nil
	e.shippers = map[string]*shipper{}
	e.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	wg.Wait()
}

// Shipping reports whether the shippers run.
func (e *Engine) Shipping() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.shipCancel != nil
}

func (e *Engine) startShippers() error {
	e.mu.Lock()
	ctx := e.shipCtx
	e.mu.Unlock()
	if ctx == nil {
		return nil
	}
	return e.startShippersCtx(ctx)
}

func (e *Engine) startShippersCtx(ctx context.Context) error {
	peers, err := node.Peers(e.cfg.StateDir)
	if err != nil {
		return err
	}
	epoch := e.cfg.Roles.Claim().Epoch
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.shipCtx != ctx || ctx.Err() != nil {
		return nil
	}
	for _, p := range peers {
		if _, ok := e.shippers[p.ID]; ok {
			continue
		}
		s := &shipper{e: e, peer: p, log: e.log.With("peer", p.Name), kick: make(chan struct{}, 1),
			state: StateDisconnected, since: time.Now(), counts: e.counts.peer(p.Name)}
		if rec, err := e.loadPeer(p.ID); err == nil && rec.Epoch == epoch {
			s.acked, s.lastSynced = rec.Acked, rec.LastSynced
		}
		e.shippers[p.ID] = s
		wg := e.shipWG
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
		if !e.Shipping() {
			continue
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
		s.kickNow()
	}
}

// Kick makes the shipper of the peer with node ID id ship (or reconnect)
// now.
func (e *Engine) Kick(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.shippers[id]; s != nil {
		s.kickNow()
	}
}

// Acked is what the shipper of the peer with node ID id knows of it: its
// acknowledged seq, and whether it is connected, in line with the
// journal's records (no comparison or full sync running). ok is false
// when this node does not ship to that peer.
func (e *Engine) Acked(id string) (acked uint64, live, ok bool) {
	e.mu.Lock()
	s := e.shippers[id]
	e.mu.Unlock()
	if s == nil {
		return 0, false, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	live = (s.state == StateInSync || s.state == StateSyncing) && !s.tree.Running
	return s.acked, live, true
}

// PeerStatus is this node's view of the peer with node ID id, if it
// ships to it.
func (e *Engine) PeerStatus(ctx context.Context, id string) *PeerStatus {
	for _, p := range e.Peers(ctx) {
		if p.ID == id {
			return &p
		}
	}
	return nil
}

// TrustedPeer is the trusted peer with node ID id.
func (e *Engine) TrustedPeer(id string) (node.Peer, bool) { return e.peer(id) }

// TrustedPeers lists the trusted peers.
func (e *Engine) TrustedPeers() ([]node.Peer, error) { return node.Peers(e.cfg.StateDir) }

// peer is the trusted peer with node ID id.
func (e *Engine) peer(id string) (node.Peer, bool) {
	peers, err := node.Peers(e.cfg.StateDir)
	if err != nil {
		e.log.Error("read peers", "err", err)
		return node.Peer{}, false
	}
	return TrustPeers(peers)(id)
}

// serve accepts peers' connections: TLS 1.3, both sides pinned by node
// ID, so an unknown peer fails in the handshake.
func (e *Engine) serve(ctx context.Context, ln net.Listener) {
	go func() { <-ctx.Done(); ln.Close() }()
	conf := ServerConfig(e.cfg.Cert, e.peer)
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
	peer, ok := e.peer(PeerID(tc.ConnectionState()))
	if !ok {
		return // removed from the trust store since the handshake
	}
	log := e.log.With("from", raw.RemoteAddr().String(), "peer", peer.Name)
	c := NewConn(tc, idleTimeout)
	var h Hello
	if err := c.Expect(THello, &h); err != nil {
		log.Warn("bad hello", "err", err)
		return
	}
	err = e.dispatch(ctx, c, peer, &h)
	if err != nil {
		log.Warn("session ended", "purpose", h.Purpose, "err", err)
		c.Send(TError, &ErrorMsg{Msg: oneLine(err)})
		c.Flush()
	}
}

// claim is this node's claim, for a Hello or Welcome.
func (e *Engine) claim() *Claim {
	c := e.cfg.Roles.Claim()
	return &c
}

func (e *Engine) dispatch(ctx context.Context, c *Conn, peer node.Peer, h *Hello) error {
	if h.Proto != Proto {
		return fmt.Errorf("protocol %d is not spoken here (%d is)", h.Proto, Proto)
	}
	if vol := e.Volume(); vol != "" && h.Volume != "" && vol != h.Volume {
		return refuse(c, e.claim(), fmt.Errorf("this node holds volume %s, %s serves %s", vol, peer.Name, h.Volume))
	}
	e.cfg.Roles.Observe(peer, h.Claim)
	switch h.Purpose {
	case PurposeReplicate:
		if h.Volume == "" {
			return refuse(c, e.claim(), errors.New("a primary without a volume ID"))
		}
		if e.cfg.Roles.Accepts(peer, h.Claim) == nil {
			if err := e.SetVolume(h.Volume); err != nil {
				return err
			}
		}
		err := e.recv.serveReplicate(ctx, c, peer, h, e.claim)
		if err != nil {
			e.counts.applyErrors.Add(1)
		}
		return err
	case PurposeVerify:
		return e.recv.serveVerify(ctx, c, h, e.claim())
	}
	fn := e.handlers[h.Purpose]
	if fn == nil {
		return refuse(c, e.claim(), fmt.Errorf("purpose %q is not served here", h.Purpose))
	}
	if err := c.Send(TWelcome, &Welcome{Proto: Proto, Volume: e.Volume(), Claim: e.claim()}); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return err
	}
	return fn(ctx, peer, c, h)
}

// Dial opens a connection to peer for purpose: mutual TLS, a Hello with
// this node's claim, and the peer's Welcome, whose claim is observed. A
// refusal is an error (with the Welcome, whose claim says more).
func (e *Engine) Dial(ctx context.Context, peer node.Peer, purpose string) (*Conn, *Welcome, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", peer.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s at %s: %w", peer.Name, peer.Addr, err)
	}
	tc := tls.Client(raw, ClientConfig(e.cfg.Cert, peer.ID))
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("TLS handshake with %s at %s: %w", peer.Name, peer.Addr, err)
	}
	c := NewConn(tc, idleTimeout)
	stop := context.AfterFunc(hctx, func() { c.Close() })
	defer stop()
	h := Hello{Proto: Proto, Purpose: purpose, Node: e.cfg.Self.Name, Volume: e.Volume(), Claim: e.claim()}
	if err := c.Send(THello, &h); err != nil {
		c.Close()
		return nil, nil, err
	}
	if err := c.Flush(); err != nil {
		c.Close()
		return nil, nil, err
	}
	var w Welcome
	if err := c.Expect(TWelcome, &w); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("%s: %w", peer.Name, err)
	}
	if w.Claim != nil {
		e.cfg.Roles.Observe(peer, w.Claim)
	}
	if w.Refused != "" {
		c.Close()
		return nil, &w, fmt.Errorf("%s refused: %s", peer.Name, w.Refused)
	}
	return c, &w, nil
}

// historySince calls fn for the records of this node's history with seq
// > after, in order, until fn returns false: first those it received
// before it became primary (from its received log, up to where its own
// journal starts), then its journal's. A received write record becomes a
// resync of its path: the data is here, but not by the inode the record
// names, which belongs to the primary it came from.
func (e *Engine) historySince(ctx context.Context, after uint64, fn func(*journal.Record) bool) error {
	j := e.cfg.Journal
	if start := j.Trimmed(); after < start {
		st, _ := e.recv.State()
		end := min(start, st.Cursor)
		stopped := false
		err := e.recv.ReceivedSince(ctx, after, func(r *journal.Record) bool {
			if r.Seq > end {
				return false
			}
			if r.Op == journal.OpWrite || r.Op == journal.OpFallocate && r.Flags&^uint32(fallocKeepSize|fallocPunchHole|fallocZeroRange) != 0 {
				r = &journal.Record{Seq: r.Seq, Epoch: r.Epoch, Time: r.Time, Op: journal.OpResync, Path: r.Path}
			}
			r.Ino = 0
			if !fn(r) {
				stopped = true
			}
			return !stopped
		})
		if err != nil || stopped {
			return err
		}
		after = max(after, start)
	}
	return j.Since(ctx, after, fn)
}

// historyFloor is the lowest cursor from which historySince serves every
// record.
func (e *Engine) historyFloor() uint64 {
	start := e.cfg.Journal.Trimmed()
	st, _ := e.recv.State()
	if st.RLFrom < start && st.Cursor >= start {
		return st.RLFrom
	}
	return start
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
	if os.Getenv(keepJournalEnv) != "" {
		return
	}
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
	e.low.Store(low)
	if low > e.cfg.Journal.Trimmed() {
		if err := e.cfg.Journal.Trim(context.Background(), low); err != nil {
			e.log.Error("trim journal", "upto", low, "err", err)
		}
	}
	// What this node received before its promotion is history too.
	if err := e.recv.TrimReceived(low); err != nil {
		e.log.Error("trim received log", "upto", low, "err", err)
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
			AckedSeq: s.acked, LastSynced: s.lastSynced, Error: s.lastErr, Tree: s.tree, BytesShipped: int64(s.counts.bytes.Load())}
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
	if !e.Shipping() {
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
