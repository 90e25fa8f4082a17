package sync

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/journal"
	"github.com/georep/georep/node"
)

// Sink is what the receiver needs from a secondary's mount (fs.Volume).
type Sink interface {
	// BlockReads holds reads through the mount off until UnblockReads.
	BlockReads()
	UnblockReads()
	// Invalidate drops the mount's cached view of changed paths.
	Invalidate(recs []*journal.Record)
}

// ReplicaState is what a secondary persists about its replica, in one
// badger key updated in the transaction that logs a batch's records.
type ReplicaState struct {
	// Volume is kept for state dirs written before the volume ID moved to
	// the engine (vol/id).
	Volume string `json:"volume,omitempty"`
	// Cursor is the last seq applied durably, in History: the epochs of
	// the primaries the replica's records came from.
	Cursor  uint64       `json:"cursor"`
	History []EpochStart `json:"history,omitempty"`
	// Full: the replica is not (yet) a consistent copy of any instant of
	// the primary; the next session starts with a full tree sync.
	Full bool `json:"full"`
	// Repair lists paths found diverged and not compared yet. Applied
	// renames carry them along.
	Repair []string `json:"repair,omitempty"`
	// Unsettled: a comparison began and did not finish, so paths beyond
	// Repair may hold a state newer than the cursor.
	Unsettled bool `json:"unsettled,omitempty"`
	// RLFrom: the received log holds every record in (RLFrom, Cursor].
	RLFrom uint64 `json:"rl_from"`
	// Applied is when the replica last became a copy of the primary up to
	// Cursor: a batch applied, or a full tree sync finished.
	Applied time.Time `json:"applied"`
	// InLine is when the primary last said (in a ping) that its journal
	// ends at Cursor: the replica held everything the primary had then.
	// Kept in memory, persisted with the next commit.
	InLine time.Time `json:"in_line,omitzero"`
}

var (
	keyReplica     = []byte("rs/state")
	prefixReceived = []byte("rl/")
)

// Receiver is the applying side of a secondary. One replication session
// runs at a time. Batches are staged durably in the state dir, applied
// with reads through the mount held off, and acknowledged once the new
// cursor is committed; a batch interrupted by a crash is redone by
// Recover, which the daemon runs before letting reads through.
type Receiver struct {
	root     int // the backing dir
	db       *badger.DB
	stageDir string
	sink     Sink
	log      *slog.Logger
	// roles admits primaries and rebases the replica on a new history
	// (nil: any primary, no rebase; tests of the applying side).
	roles Roles
	// PostApply, if set, runs after each applied batch, in the
	// background (the post-apply hook).
	PostApply func()
	// crashAfter, when positive, kills the process with SIGKILL once
	// that many records have been applied: a crash point for the
	// integration tests (GEOREP_TEST_CRASH_AFTER_RECORDS).
	crashAfter int
	applied    int
	// noSync skips syncfs before the cursor is committed (fuzz tests,
	// which apply thousands of batches).
	noSync bool
	// counts, if set, are the engine's totals (batches applied).
	counts *counters

	session gosync.Mutex // one replication session at a time
	// sessMu guards preempt, which ends the running session (its
	// connection) so a newer one can take over.
	sessMu  gosync.Mutex
	preempt context.CancelFunc

	mu    gosync.Mutex
	state ReplicaState
	tree  TreeProgress

	// links maps the primary's inode of a file with several names to one
	// of its names here and the local inode, so a later sync of another
	// name links it instead of making a copy. Entries are checked before
	// use (the name may have moved or been reused since).
	links map[uint64]linkRef
}

type linkRef struct {
	path string
	ino  uint64
}

// noteLink records that the primary's inode pino is at path here.
func (r *Receiver) noteLink(pino uint64, path string) {
	var st unix.Stat_t
	if r.lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	if r.links == nil {
		r.links = map[uint64]linkRef{}
	}
	r.links[pino] = linkRef{path, st.Ino}
}

// linkedPath is a name here of the primary's inode pino, if one is known
// and still holds the inode it did.
func (r *Receiver) linkedPath(pino uint64) (string, bool) {
	ref, ok := r.links[pino]
	if !ok {
		return "", false
	}
	var st unix.Stat_t
	if r.lstat(ref.path, &st) != nil || st.Ino != ref.ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
		delete(r.links, pino)
		return "", false
	}
	return ref.path, true
}

// replicaOf reports whether local inode ino is known to be the copy of
// the primary's inode pino.
func (r *Receiver) replicaOf(pino, ino uint64) bool {
	ref, ok := r.links[pino]
	return ok && ref.ino == ino
}

// moveLinks follows a rename in the link map.
func (r *Receiver) moveLinks(from, to string, exchange bool) {
	for k, ref := range r.links {
		switch {
		case within(ref.path, from):
			ref.path = to + strings.TrimPrefix(ref.path, from)
		case exchange && within(ref.path, to):
			ref.path = from + strings.TrimPrefix(ref.path, to)
		default:
			continue
		}
		r.links[k] = ref
	}
}

// TreeProgress is the progress of a running full tree sync.
type TreeProgress struct {
	Running bool  `json:"running"`
	Dirs    int64 `json:"dirs"`
	Files   int64 `json:"files"`
	Bytes   int64 `json:"bytes"`
}

// NewReceiver applies into the backing dir rootFD, staging under stateDir.
func NewReceiver(rootFD int, db *badger.DB, stateDir string, sink Sink, log *slog.Logger) (*Receiver, error) {
	r := &Receiver{root: rootFD, db: db, stageDir: filepath.Join(stateDir, "staging"), sink: sink, log: log.With("component", "receiver")}
	if err := os.MkdirAll(r.stageDir, 0o700); err != nil {
		return nil, fmt.Errorf("create staging dir: %w", err)
	}
	err := db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(keyReplica)
		if errors.Is(err, badger.ErrKeyNotFound) {
			r.state.Full = true
			return nil
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error { return json.Unmarshal(v, &r.state) })
	})
	if err != nil {
		return nil, fmt.Errorf("load replica state: %w", err)
	}
	return r, nil
}

// State returns the replica state.
func (r *Receiver) State() (ReplicaState, TreeProgress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.state
	st.Repair = slices.Clone(st.Repair)
	return st, r.tree
}

func (r *Receiver) stagePath() string    { return filepath.Join(r.stageDir, "batch") }
func (r *Receiver) progressPath() string { return filepath.Join(r.stageDir, "progress") }

// Recover finishes a batch that was staged but not committed when the
// daemon stopped. Call it before reads are let through.
func (r *Receiver) Recover(ctx context.Context) error {
	os.Remove(r.stagePath() + ".tmp") // an incomplete transfer: the primary resends
	if _, err := os.Stat(r.stagePath()); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	r.log.Info("redoing the staged batch interrupted by a stop")
	_, err := r.applyStaged(ctx)
	if errors.Is(err, ErrProtocol) || errors.Is(err, ErrBadPath) {
		// Every frame was checked before it was staged: the stage is
		// damaged. What it applied is unknown, so the paths changed since
		// the cursor are compared when the primary comes.
		r.log.Error("the staged batch is damaged: dropping it; the primary compares what changed since the cursor", "err", err)
		os.Remove(r.stagePath())
		os.Remove(r.progressPath())
		r.mu.Lock()
		st := r.state
		r.mu.Unlock()
		st.Unsettled = true
		return r.commit(st, nil)
	}
	return err
}

// checkStaged checks one frame of a batch as it arrives.
func checkStaged(f Frame) error {
	var err error
	switch f.Type {
	case TRecord:
		var rec journal.Record
		if err = DecodeJSON(f, &rec); err == nil {
			if err = checkRecord(&rec); err != nil {
				err = fmt.Errorf("record %d: %w", rec.Seq, err)
			}
		}
	case TFile:
		err = DecodeJSON(f, new(FileHeader))
	case TData:
		_, _, err = DecodeData(f)
	case THole:
		_, _, err = DecodeRange(f)
	case TFileEnd:
		err = DecodeJSON(f, new(FileEnd))
	case TBatchEnd:
		err = DecodeJSON(f, new(BatchEnd))
	default:
		err = protoErr("unexpected %s frame in a batch", f.Type)
	}
	return err
}

// serveReplicate runs one replication session from a primary: it
// refuses a primary this node does not follow, takes the session over
// from an older one, finishes a batch left staged, lets the failover side
// bring the replica onto the primary's history (Join), and then applies
// what the primary sends until the connection ends or the primary is
// deposed.
func (r *Receiver) serveReplicate(ctx context.Context, c *Conn, peer node.Peer, h *Hello, claim func() *Claim) error {
	if err := r.accepts(peer, h.Claim); err != nil {
		return refuse(c, claim(), err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(sctx, func() { c.Close() })
	defer stop()
	release, err := r.acquire(sctx, cancel)
	if err != nil {
		return refuse(c, claim(), err)
	}
	defer release()
	// A batch staged by an interrupted session is finished first: it
	// came from a primary this node followed, and Join must see it.
	if err := r.Recover(ctx); err != nil {
		return err
	}
	if r.roles != nil {
		if err := r.roles.Join(sctx, peer, h.Claim); err != nil {
			return refuse(c, claim(), fmt.Errorf("join the history of %s: %w", peer.Name, err))
		}
	}
	r.mu.Lock()
	st := r.state
	r.mu.Unlock()
	w := Welcome{Proto: Proto, Volume: h.Volume, Claim: claim(), Cursor: st.Cursor, Full: st.Full,
		Repair: st.Repair, Unsettled: st.Unsettled}
	if err := c.Send(TWelcome, &w); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return err
	}
	for {
		f, err := c.Read()
		if err != nil {
			if errors.Is(err, io.EOF) || sctx.Err() != nil {
				return nil
			}
			return err
		}
		switch f.Type {
		case TPing:
		case TBatch, TTree:
			// The primary may have been deposed since the session began.
			if err := r.accepts(peer, h.Claim); err != nil {
				return err
			}
		}
		switch f.Type {
		case TPing:
			var p Ping
			if len(f.Payload) > 0 {
				if err := DecodeJSON(f, &p); err != nil {
					return err
				}
			}
			r.mu.Lock()
			if p.Seq != 0 && p.Seq == r.state.Cursor {
				r.state.InLine = time.Now()
			}
			r.mu.Unlock()
		case TBatch:
			var b BatchBegin
			if err := DecodeJSON(f, &b); err != nil {
				return err
			}
			if err := r.receiveBatch(ctx, c, f, &b); err != nil {
				return err
			}
		case TTree:
			var tb TreeBegin
			if err := DecodeJSON(f, &tb); err != nil {
				return err
			}
			if err := r.receiveTree(ctx, c, &tb); err != nil {
				return err
			}
		default:
			return protoErr("unexpected %s frame", f.Type)
		}
	}
}

// refuse answers a Hello with this node's claim and why it will not serve.
func refuse(c *Conn, claim *Claim, why error) error {
	c.Send(TWelcome, &Welcome{Proto: Proto, Claim: claim, Refused: oneLine(why)})
	c.Flush()
	return why
}

func (r *Receiver) accepts(peer node.Peer, c *Claim) error {
	if r.roles == nil {
		return nil
	}
	return r.roles.Accepts(peer, c)
}

// sessionWait bounds how long a new session waits for the one it
// preempted to end.
const sessionWait = 15 * time.Second

// acquire ends the running session, if any, and takes its place; cancel
// ends this one in turn. Call the result when the session ends.
func (r *Receiver) acquire(ctx context.Context, cancel context.CancelFunc) (func(), error) {
	r.sessMu.Lock()
	if r.preempt != nil {
		r.preempt()
	}
	r.sessMu.Unlock()
	deadline := time.Now().Add(sessionWait)
	for !r.session.TryLock() {
		if time.Now().After(deadline) {
			return nil, errors.New("another replication session is running")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	r.sessMu.Lock()
	r.preempt = cancel
	r.sessMu.Unlock()
	return func() {
		r.sessMu.Lock()
		r.preempt = nil
		r.sessMu.Unlock()
		r.session.Unlock()
	}, nil
}

// Preempt ends the running replication session, if any, and returns once
// it has ended (a batch being applied is finished first). Sessions a
// primary opens later are the roles' to refuse.
func (r *Receiver) Preempt(ctx context.Context) error {
	release, err := r.acquire(ctx, func() {})
	if err != nil {
		return err
	}
	release()
	return nil
}

// receiveBatch stages the batch that begins with frame first, applies it
// and acknowledges it.
func (r *Receiver) receiveBatch(ctx context.Context, c *Conn, first Frame, begin *BatchBegin) error {
	tmp := r.stagePath() + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("stage batch: %w", err)
	}
	defer os.Remove(tmp)
	w := bufio.NewWriterSize(out, 1<<20)
	var hdr []byte
	stage := func(f Frame) error {
		hdr = AppendFrame(hdr[:0], f.Type)
		binary.BigEndian.PutUint32(hdr, uint32(1+len(f.Payload)))
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		_, err := w.Write(f.Payload)
		return err
	}
	if err := stage(first); err != nil {
		out.Close()
		return fmt.Errorf("stage batch: %w", err)
	}
	for done := false; !done; {
		f, err := c.Read()
		if err != nil {
			out.Close()
			return fmt.Errorf("receive batch: %w", noEOF(err))
		}
		// Every frame is checked before it is staged: a batch that
		// cannot be applied whole is refused before any of it is.
		if err := checkStaged(f); err != nil {
			out.Close()
			return err
		}
		done = f.Type == TBatchEnd
		if err := stage(f); err != nil {
			out.Close()
			return fmt.Errorf("stage batch: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		out.Close()
		return fmt.Errorf("stage batch: %w", err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("stage batch: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("stage batch: %w", err)
	}
	os.Remove(r.progressPath())
	if err := os.Rename(tmp, r.stagePath()); err != nil {
		return fmt.Errorf("stage batch: %w", err)
	}
	if err := syncDir(r.stageDir); err != nil {
		return err
	}
	ack, err := r.applyStaged(ctx)
	if err != nil {
		// The staged batch stays; it is redone before the next one.
		c.Send(TAck, &Ack{Error: oneLine(err)})
		c.Flush()
		return err
	}
	if err := c.Send(TAck, ack); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return err
	}
	if r.PostApply != nil {
		go r.PostApply()
	}
	if err := r.TrimReceived(begin.Trim); err != nil {
		r.log.Warn("trim received log", "err", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func oneLine(err error) string {
	s := err.Error()
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// applyStaged applies the staged batch, commits the cursor and received
// log, and removes the stage. Progress (the frames applied) is kept in a
// small file, so a redo skips what was done; RENAME_EXCHANGE, which
// cannot be redone blindly, is checked against the inodes it moved.
func (r *Receiver) applyStaged(ctx context.Context) (*Ack, error) {
	f, err := os.Open(r.stagePath())
	if err != nil {
		return nil, fmt.Errorf("open staged batch: %w", err)
	}
	defer f.Close()
	prog, err := os.OpenFile(r.progressPath(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open batch progress: %w", err)
	}
	defer prog.Close()
	var pbuf [24]byte
	n, _ := prog.ReadAt(pbuf[:], 0)
	done := int64(-1)
	var exA, exB uint64
	if n == 24 {
		done = int64(binary.BigEndian.Uint64(pbuf[:8]))
		exA, exB = binary.BigEndian.Uint64(pbuf[8:16]), binary.BigEndian.Uint64(pbuf[16:])
	}
	mark := func(i int64, a, b uint64) error {
		binary.BigEndian.PutUint64(pbuf[:8], uint64(i))
		binary.BigEndian.PutUint64(pbuf[8:16], a)
		binary.BigEndian.PutUint64(pbuf[16:], b)
		_, err := prog.WriteAt(pbuf[:], 0)
		return err
	}

	r.sink.BlockReads()
	var changed []*journal.Record
	defer func() {
		r.sink.UnblockReads()
		r.sink.Invalidate(changed)
	}()

	app := NewApplier(r.root)
	br := bufio.NewReaderSize(f, 1<<20)
	var buf []byte
	var begin BatchBegin
	var end *BatchEnd
	var received [][]byte
	r.mu.Lock()
	repair := NewPathSet(r.state.Repair...)
	r.mu.Unlock()
	var file *stagedFile
	for i := int64(0); end == nil; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var fr Frame
		fr, buf, err = ReadFrame(br, buf)
		if err != nil {
			return nil, fmt.Errorf("read staged batch: %w", noEOF(err))
		}
		switch fr.Type {
		case TBatch:
			if err := DecodeJSON(fr, &begin); err != nil {
				return nil, err
			}
		case TRecord:
			var rec journal.Record
			if err := DecodeJSON(fr, &rec); err != nil {
				return nil, err
			}
			if err := checkRecord(&rec); err != nil {
				return nil, fmt.Errorf("record %d: %w", rec.Seq, err)
			}
			received = append(received, slices.Clone(fr.Payload))
			changed = append(changed, &rec)
			exchange := rec.Op == journal.OpRename && rec.Flags&renameExchange != 0
			if i <= done {
				// Applied before a stop, which lost whether it fitted
				// the replica: its paths are compared to be sure.
				if rec.Op == journal.OpRename {
					repair.Move(rec.Path, rec.NewPath, exchange)
				}
				repair.Add(rec.Paths()...)
				continue
			}
			if rec.Op == journal.OpResync {
				// The primary cannot vouch for this path: compare it.
				repair.Add(rec.Path)
			} else if exchange && i == done+1 && exA != 0 && r.swapped(rec.Path, rec.NewPath, exA, exB) {
				// Exchanged before the stop.
				repair.Move(rec.Path, rec.NewPath, true)
			} else if err := r.applyRecord(app, &rec, exchange, i, mark); err != nil {
				if !diverged(err) {
					return nil, err
				}
				r.log.Warn("record does not apply: the replica differs here; the path will be compared", "seq", rec.Seq, "op", rec.Op, "path", rec.Path, "err", err)
				repair.Add(rec.Paths()...)
			} else {
				if rec.Op == journal.OpRename {
					// Paths to compare move with what they name.
					repair.Move(rec.Path, rec.NewPath, exchange)
				}
				switch rec.Op {
				case journal.OpLink:
					r.noteLink(rec.Ino, rec.NewPath)
				case journal.OpRename:
					r.moveLinks(rec.Path, rec.NewPath, exchange)
				}
			}
			if err := mark(i, 0, 0); err != nil {
				return nil, fmt.Errorf("batch progress: %w", err)
			}
			if r.applied++; r.crashAfter > 0 && r.applied >= r.crashAfter {
				r.log.Warn("crash point reached: killing the process", "records", r.applied)
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		case TFile:
			var h FileHeader
			if err := DecodeJSON(fr, &h); err != nil {
				return nil, err
			}
			file = r.openStagedFile(&h, repair)
		case TData, THole:
			if file == nil {
				return nil, protoErr("%s frame outside a file", fr.Type)
			}
			if err := file.apply(fr); err != nil {
				return nil, err
			}
		case TFileEnd:
			var fe FileEnd
			if err := DecodeJSON(fr, &fe); err != nil {
				return nil, err
			}
			if file == nil {
				return nil, protoErr("file end outside a file")
			}
			if err := file.finish(&fe); err != nil {
				return nil, err
			}
			file = nil
		case TBatchEnd:
			end = new(BatchEnd)
			if err := DecodeJSON(fr, end); err != nil {
				return nil, err
			}
		default:
			return nil, protoErr("unexpected %s frame in a staged batch", fr.Type)
		}
	}
	if file != nil {
		file.close()
	}
	for _, fx := range end.Fixups {
		r.setMtime(fx.Path, fx.Mtime)
	}
	// The batch's changes reach the disk before the cursor says so.
	if !r.noSync {
		if err := unix.Syncfs(r.root); err != nil {
			return nil, fmt.Errorf("sync backing dir: %w", err)
		}
	}
	r.mu.Lock()
	st := r.state
	r.mu.Unlock()
	st.Cursor, st.Applied, st.Repair = end.Seq, time.Now(), repair.List()
	if err := r.commit(st, received); err != nil {
		return nil, err
	}
	os.Remove(r.stagePath())
	os.Remove(r.progressPath())
	if r.counts != nil {
		r.counts.batchesApplied.Add(1)
		r.counts.recordsApplied.Add(uint64(len(received)))
	}
	r.log.Info("batch applied", "first", begin.First, "seq", end.Seq, "records", len(received), "repair", len(st.Repair))
	return &Ack{Seq: end.Seq, Repair: st.Repair}, nil
}

// PathSet is an ordered set of volume paths that follows renames: a path
// added before a rename(from, to) is found under to afterwards. The
// receiver keeps the paths it must compare in one; the failover side
// names a node's divergent changes with one.
type PathSet struct {
	paths []string
	has   map[string]bool
}

// NewPathSet returns a set holding paths.
func NewPathSet(paths ...string) *PathSet {
	s := &PathSet{has: map[string]bool{}}
	s.Add(paths...)
	return s
}

// Add adds paths.
func (s *PathSet) Add(ps ...string) {
	for _, p := range ps {
		if !s.has[p] {
			s.has[p] = true
			s.paths = append(s.paths, p)
		}
	}
}

// Move follows rename(from, to) (an exchange when exchange is set).
func (s *PathSet) Move(from, to string, exchange bool) {
	if len(s.paths) == 0 || from == "" || to == "" {
		return
	}
	moved := false
	for i, p := range s.paths {
		switch {
		case within(p, from):
			s.paths[i] = to + strings.TrimPrefix(p, from)
		case exchange && within(p, to):
			s.paths[i] = from + strings.TrimPrefix(p, to)
		default:
			continue
		}
		moved = true
	}
	if moved {
		old := s.paths
		s.paths, s.has = nil, map[string]bool{}
		s.Add(old...)
	}
}

// Follow adds the paths of r after following it if it is a rename.
func (s *PathSet) Follow(r *journal.Record) {
	if r.Op == journal.OpRename {
		s.Move(r.Path, r.NewPath, r.Flags&renameExchange != 0)
	}
	s.Add(r.Paths()...)
}

// List returns the paths in the order they were added.
func (s *PathSet) List() []string { return slices.Clone(s.paths) }

// Len is the number of paths.
func (s *PathSet) Len() int { return len(s.paths) }

// applyRecord applies one record; before an exchange it notes the inodes
// it is about to swap.
func (r *Receiver) applyRecord(app *Applier, rec *journal.Record, exchange bool, i int64, mark func(int64, uint64, uint64) error) error {
	if exchange {
		a, b := r.inoAt(rec.Path), r.inoAt(rec.NewPath)
		if err := mark(i-1, a, b); err != nil {
			return fmt.Errorf("batch progress: %w", err)
		}
	}
	return app.Apply(rec)
}

func (r *Receiver) inoAt(p string) uint64 {
	var st unix.Stat_t
	if r.lstat(p, &st) != nil {
		return 0
	}
	return st.Ino
}

// swapped reports whether paths a and b now hold inodes b0 and a0.
func (r *Receiver) swapped(a, b string, a0, b0 uint64) bool {
	return r.inoAt(a) == b0 && r.inoAt(b) == a0
}

func (r *Receiver) lstat(p string, st *unix.Stat_t) error {
	if p == "" {
		return unix.Fstat(r.root, st)
	}
	dir, name, err := OpenParent(r.root, p)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	return unix.Fstatat(dir, name, st, unix.AT_SYMLINK_NOFOLLOW)
}

func (r *Receiver) setMtime(p string, mtime int64) {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtime)}
	if p == "" {
		setMtimeFD(r.root, mtime)
		return
	}
	dir, name, err := OpenParent(r.root, p)
	if err != nil {
		return
	}
	defer unix.Close(dir)
	unix.UtimesNanoAt(dir, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// commit persists the replica state and the received records in one
// transaction (with extra's changes, if set).
func (r *Receiver) commit(st ReplicaState, received [][]byte, extra ...func(*badger.Txn) error) error {
	js, err := json.Marshal(&st)
	if err != nil {
		return err
	}
	err = r.db.Update(func(txn *badger.Txn) error {
		for _, fn := range extra {
			if err := fn(txn); err != nil {
				return err
			}
		}
		for _, rec := range received {
			var hdr struct {
				Seq uint64 `json:"seq"`
			}
			if err := json.Unmarshal(rec, &hdr); err != nil {
				return err
			}
			if err := txn.Set(binary.BigEndian.AppendUint64(slices.Clone(prefixReceived), hdr.Seq), rec); err != nil {
				return err
			}
		}
		return txn.Set(keyReplica, js)
	})
	if err == nil {
		err = r.db.Sync()
	}
	if err != nil {
		return fmt.Errorf("commit cursor %d: %w", st.Cursor, err)
	}
	r.mu.Lock()
	r.state = st
	r.mu.Unlock()
	return nil
}

// diverged tells a record that does not fit the replica (it differs from
// the primary there: compare and ship the path) from a failure of the
// replica itself (retry the batch later).
func diverged(err error) bool {
	for _, e := range []syscall.Errno{unix.ENOSPC, unix.EDQUOT, unix.EIO, unix.EROFS, unix.ENOMEM, unix.EMFILE, unix.ENFILE} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// stagedFile applies a batch's data for one file.
type stagedFile struct {
	r    *Receiver
	path string
	fd   int // -1: the file is not there; its data is skipped
}

func (r *Receiver) openStagedFile(h *FileHeader, repair *PathSet) *stagedFile {
	sf := &stagedFile{r: r, path: h.Path, fd: -1}
	fd, err := openRegular(r.root, h.Path, unix.O_WRONLY)
	if err == nil {
		sf.fd = fd
		return sf
	}
	r.log.Warn("file data has no file to go to; the path will be compared", "path", h.Path, "err", err)
	repair.Add(h.Path)
	return sf
}

func (sf *stagedFile) apply(f Frame) error {
	if sf.fd < 0 {
		return nil
	}
	switch f.Type {
	case TData:
		off, data, err := DecodeData(f)
		if err != nil {
			return err
		}
		for len(data) > 0 {
			n, err := unix.Pwrite(sf.fd, data, off)
			if err != nil {
				return fmt.Errorf("write %q at %d: %w", sf.path, off, err)
			}
			data, off = data[n:], off+int64(n)
		}
	case THole:
		off, n, err := DecodeRange(f)
		if err != nil {
			return err
		}
		if n > 0 {
			if err := punch(sf.fd, off, n); err != nil {
				return fmt.Errorf("punch hole in %q: %w", sf.path, err)
			}
		}
	}
	return nil
}

// punch makes [off, off+n) a hole, or zeros where holes are unsupported.
func punch(fd int, off, n int64) error {
	err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return err
	}
	zero := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(zero)))
		if _, err := unix.Pwrite(fd, zero[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

func (sf *stagedFile) finish(fe *FileEnd) error {
	defer sf.close()
	if sf.fd < 0 || fe.Missing {
		return nil
	}
	if err := unix.Ftruncate(sf.fd, fe.Size); err != nil {
		return fmt.Errorf("size %q: %w", sf.path, err)
	}
	if err := setMtimeFD(sf.fd, fe.Mtime); err != nil {
		return fmt.Errorf("mtime %q: %w", sf.path, err)
	}
	return nil
}

func (sf *stagedFile) close() {
	if sf.fd >= 0 {
		unix.Close(sf.fd)
		sf.fd = -1
	}
}

// setMtimeFD sets the mtime of the file open as fd (atime untouched).
func setMtimeFD(fd int, mtime int64) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtime)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), ts, 0)
}
