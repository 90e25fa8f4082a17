package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/georep/georep/journal"
	"github.com/georep/georep/node"
)

// Source is what the shipper needs from the primary's mount (fs.Volume).
type Source interface {
	// Cut ends open write sessions, so the journal names every range
	// written so far.
	Cut() error
	// Quiesce runs fn with mutations held off and sessions cut.
	Quiesce(ctx context.Context, fn func() error) error
}

// Peer states shown by status.
const (
	StateDisconnected = "disconnected"
	StateConnected    = "connected"
	StateFullSync     = "full-sync"
	StateSyncing      = "syncing"
	StateInSync       = "in-sync"
)

// maxBatchRecords bounds the records of one batch.
const maxBatchRecords = 4096

// shipper replicates to one secondary: it keeps a connection up, brings
// the peer to the journal's head and keeps it there.
type shipper struct {
	e    *Engine
	peer node.Peer
	log  *slog.Logger
	kick chan struct{}

	mu         gosync.Mutex
	state      string
	acked      uint64
	lastSynced time.Time
	lastErr    string
	since      time.Time // when the peer was last connected or lost
	tree       TreeProgress
	lastAck    time.Time
	// counts are the peer's totals, kept across shippers (Counters).
	counts *peerCounters
}

// peerRecord is what the primary persists per peer: sp/<node id>. Epoch
// is the primary's: a record of an earlier stint as primary (another
// history) is not this one's.
type peerRecord struct {
	Acked      uint64    `json:"acked"`
	LastSynced time.Time `json:"last_synced"`
	Epoch      uint64    `json:"epoch"`
}

func (s *shipper) setState(st string) {
	s.mu.Lock()
	if s.state != st {
		s.since = time.Now()
	}
	s.state = st
	s.mu.Unlock()
}

// run keeps a replication session with the peer until ctx ends.
func (s *shipper) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := s.session(ctx)
		s.setState(StateDisconnected)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.lastErr = oneLine(err)
		s.mu.Unlock()
		s.counts.errors.Add(1)
		s.log.Warn("replication session ended", "err", err)
		if time.Since(start) > 10*time.Second || s.progressed(start) {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		case <-s.kick:
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// progressed reports whether the peer acknowledged anything since t.
func (s *shipper) progressed(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastAck.After(t)
}

// idleTimeout ends a connection on which nothing moved for that long;
// pings keep an idle session well inside it (and tell the replica it is
// in line). GEOREP_TEST_PING_INTERVAL shortens the interval for tests.
const (
	idleTimeout  = 60 * time.Second
	pingInterval = 15 * time.Second
	pingEnv      = "GEOREP_TEST_PING_INTERVAL"
)

// errNotPrimary ends a session of a node that is no longer the primary.
var errNotPrimary = errors.New("this node is not the primary any more")

func (s *shipper) session(ctx context.Context) error {
	roles := s.e.cfg.Roles
	if !roles.IsPrimary() {
		return errNotPrimary
	}
	c, w, err := s.e.Dial(ctx, s.peer, PurposeReplicate)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	// The peer's claim was observed: it may have shown a newer primary.
	if !roles.IsPrimary() {
		return fmt.Errorf("%w: %s knows epoch %d", errNotPrimary, s.peer.Name, w.Claim.Epoch)
	}
	j := s.e.cfg.Journal
	s.setState(StateConnected)
	s.log.Info("connected", "cursor", w.Cursor, "full", w.Full, "repair", len(w.Repair))
	cursor := w.Cursor
	switch floor := s.e.historyFloor(); {
	case w.Full:
		s.log.Info("full tree sync: the replica is new or was not left consistent")
	case cursor < floor:
		s.log.Info("full tree sync: this node's history no longer holds the records after the replica's cursor", "cursor", cursor, "floor", floor)
		w.Full = true
	case cursor > j.Seq():
		s.log.Info("full tree sync: the replica is ahead of this journal", "cursor", cursor, "seq", j.Seq())
		w.Full = true
	}
	if w.Full {
		if cursor, err = s.fullSync(ctx, c); err != nil {
			return err
		}
	} else {
		synced := time.Time{}
		if cursor == j.Seq() && len(w.Repair) == 0 && !w.Unsettled {
			synced = time.Now() // it holds everything there is
		}
		s.acknowledged(cursor, synced)
		if len(w.Repair) > 0 || w.Unsettled {
			if cursor, err = s.repair(ctx, c, cursor, w.Repair, w.Unsettled); err != nil {
				return err
			}
		}
	}
	for {
		if !roles.IsPrimary() {
			return errNotPrimary
		}
		if cursor >= j.Seq() {
			s.setState(StateInSync)
		} else {
			s.setState(StateSyncing)
		}
		target, err := s.waitWork(ctx, c, cursor)
		if err != nil {
			return err
		}
		for cursor < target && roles.IsPrimary() {
			s.setState(StateSyncing)
			var repair []string
			if cursor, repair, err = s.shipBatch(ctx, c, cursor); err != nil {
				return err
			}
			if len(repair) > 0 {
				if cursor, err = s.repair(ctx, c, cursor, repair, false); err != nil {
					return err
				}
			}
		}
	}
}

// kickNow makes the shipper ship, or reconnect, at once.
func (s *shipper) kickNow() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// waitWork waits until there is something to ship past cursor (in
// continuous mode, new records; in scheduled mode, a kick), pinging the
// idle connection, and returns the seq to ship up to. A peer that goes
// away meanwhile (its daemon killed, the connection cut) ends the session
// at once, so the peer's state says so while there is nothing to ship.
func (s *shipper) waitWork(ctx context.Context, c *Conn, cursor uint64) (uint64, error) {
	j := s.e.cfg.Journal
	var gone chan error // the connection watcher's, once waiting begins
	defer func() {
		if gone != nil {
			<-gone
		}
	}()
	watch, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	for {
		if s.e.continuous() && j.Seq() > cursor {
			time.Sleep(coalesce) // let a burst of changes form one batch
			return j.Seq(), nil
		}
		if gone == nil {
			// Only when there is nothing to ship right away: a busy
			// session goes from batch to batch without it.
			gone = make(chan error, 1)
			go func() { gone <- c.WaitGone(watch) }()
		}
		wctx, cancel := context.WithTimeout(ctx, s.e.ping)
		var newRecords <-chan struct{}
		if s.e.continuous() {
			ch := make(chan struct{})
			go func() {
				if j.Wait(wctx, cursor) == nil {
					close(ch)
				}
			}()
			newRecords = ch
		}
		select {
		case <-ctx.Done():
			cancel()
			return 0, ctx.Err()
		case err := <-gone:
			cancel()
			gone <- nil // for the deferred wait
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("the peer went away while the session was idle: %w", err)
		case <-s.kick:
			cancel()
			if err := s.e.cfg.Source.Cut(); err != nil {
				return 0, err
			}
			if j.Seq() > cursor {
				return j.Seq(), nil
			}
		case <-newRecords:
			cancel()
		case <-wctx.Done():
			cancel()
			var ping Ping
			if err := s.e.cfg.Source.Cut(); err != nil {
				return 0, err
			}
			if j.Seq() == cursor {
				ping.Seq = cursor
			}
			if err := c.Send(TPing, &ping); err != nil {
				return 0, err
			}
			if err := c.Flush(); err != nil {
				return 0, err
			}
		}
	}
}

// coalesce is how long the shipper lets changes gather before a batch.
const coalesce = 20 * time.Millisecond

// acknowledged records the peer's new cursor.
func (s *shipper) acknowledged(seq uint64, synced time.Time) {
	s.mu.Lock()
	s.acked = seq
	s.lastAck = time.Now()
	if !synced.IsZero() {
		s.lastSynced = synced
	}
	rec := peerRecord{Acked: s.acked, LastSynced: s.lastSynced, Epoch: s.e.cfg.Roles.Claim().Epoch}
	s.lastErr = ""
	s.mu.Unlock()
	if err := s.e.savePeer(s.peer.ID, rec); err != nil {
		s.log.Error("persist peer cursor", "err", err)
	}
	s.e.trim()
}

// batchPlan is what a batch ships for one file: its data goes right after
// the last write record of the file in the batch.
type batchPlan struct {
	last   int
	ranges []journal.Range
	whole  bool
}

// shipBatch ships the records after cursor (up to maxBatchRecords) with
// the data they need, waits for the acknowledgement, and returns the new
// cursor and the paths the replica has to compare (all of them: the
// replica keeps the list, carried along its renames).
func (s *shipper) shipBatch(ctx context.Context, c *Conn, cursor uint64) (uint64, []string, error) {
	j := s.e.cfg.Journal
	if err := s.e.cfg.Source.Cut(); err != nil {
		return cursor, nil, err
	}
	cut := time.Now()
	bytes0 := s.counts.bytes.Load()
	if err := j.Flush(ctx); err != nil {
		return cursor, nil, err
	}
	var recs []*journal.Record
	err := s.e.historySince(ctx, cursor, func(r *journal.Record) bool {
		recs = append(recs, r)
		return len(recs) < maxBatchRecords
	})
	if err != nil {
		return cursor, nil, err
	}
	if len(recs) == 0 {
		return max(cursor, j.Seq()), nil, nil
	}
	last := recs[len(recs)-1].Seq
	repair := map[string]bool{} // files whose data could not be sent
	plans := map[uint64]*batchPlan{}
	out := recs[:0]
	for _, r := range recs {
		if r.Op == journal.OpFallocate && r.Flags&^uint32(fallocKeepSize|fallocPunchHole|fallocZeroRange) != 0 {
			// Collapse and insert shift data: ship the file whole.
			r = &journal.Record{Seq: r.Seq, Epoch: r.Epoch, Time: r.Time, Op: journal.OpWrite, Path: r.Path, Ino: r.Ino, Whole: true}
		}
		if r.Op == journal.OpWrite && r.Ino != 0 {
			p := plans[r.Ino]
			if p == nil {
				p = &batchPlan{}
				plans[r.Ino] = p
			}
			p.last = len(out)
			p.ranges = journal.MergeRanges(p.ranges, r.Ranges)
			p.whole = p.whole || r.Whole
		}
		out = append(out, r)
	}
	if err := c.Send(TBatch, &BatchBegin{First: recs[0].Seq, Last: last, Trim: s.e.low.Load()}); err != nil {
		return cursor, nil, err
	}
	fix := newFixups()
	for i, r := range out {
		if err := c.Send(TRecord, wireRecord(r)); err != nil {
			return cursor, nil, err
		}
		fix.add(r)
		if p := plans[r.Ino]; r.Op == journal.OpWrite && p != nil && p.last == i {
			if err := s.sendFileData(c, r, p, repair); err != nil {
				return cursor, nil, err
			}
		}
	}
	if err := c.Send(TBatchEnd, &BatchEnd{Seq: last, Fixups: fix.list(s.e.cfg.Root)}); err != nil {
		return cursor, nil, err
	}
	if err := c.Flush(); err != nil {
		return cursor, nil, err
	}
	var ack Ack
	if err := c.Expect(TAck, &ack); err != nil {
		return cursor, nil, fmt.Errorf("batch %d..%d: %w", recs[0].Seq, last, err)
	}
	if ack.Error != "" {
		return cursor, nil, fmt.Errorf("batch %d..%d: peer could not apply it: %s", recs[0].Seq, last, ack.Error)
	}
	if ack.Seq != last {
		return cursor, nil, fmt.Errorf("batch %d..%d: peer acknowledged seq %d", recs[0].Seq, last, ack.Seq)
	}
	s.counts.batches.Add(1)
	s.counts.records.Add(uint64(len(out)))
	s.log.Info("batch shipped", "first", recs[0].Seq, "last", last, "records", len(out), "files", len(plans),
		"bytes", s.counts.bytes.Load()-bytes0, "took", time.Since(cut).Round(time.Microsecond))
	s.acknowledged(last, cut)
	paths := slices.Clone(ack.Repair)
	for p := range repair {
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	return last, paths, nil
}

// repair compares the paths the replica could not apply records to (or
// that a resync record named) and ships what differs. A comparison shows
// the replica the primary's state of the moment, so records from before
// it must not be replayed over it unchecked; and applications must not
// wait while big differences travel. So: the records up to now are
// shipped, the paths compared while applications write, and then, with
// mutations held off for a moment, the records written meanwhile are
// shipped and everything they touched compared again, after which the
// replica is an exact copy at that instant, whose seq becomes its cursor.
// unsettled: an earlier comparison was interrupted, so every path changed
// since the cursor is compared at the quiet instant too.
func (s *shipper) repair(ctx context.Context, c *Conn, cursor uint64, paths []string, unsettled bool) (uint64, error) {
	s.log.Info("comparing paths the replica could not apply records to", "paths", len(paths), "unsettled", unsettled)
	j := s.e.cfg.Journal
	since := cursor
	target, err := s.cutSeq(ctx)
	if err != nil {
		return cursor, err
	}
	for cursor < target {
		if cursor, paths, err = s.shipBatch(ctx, c, cursor); err != nil {
			return cursor, err
		}
	}
	if !unsettled {
		since = cursor
	}
	if err := s.treeSync(ctx, c, paths, cursor, false, false, nil); err != nil {
		return cursor, err
	}
	err = s.e.cfg.Source.Quiesce(ctx, func() error {
		if err := j.Flush(ctx); err != nil {
			return err
		}
		for cursor < j.Seq() {
			var err error
			if cursor, paths, err = s.shipBatch(ctx, c, cursor); err != nil {
				return err
			}
		}
		touched, inos, err := s.touched(ctx, since, cursor)
		if err != nil {
			return err
		}
		roots := append(paths, touched...)
		return s.treeSync(ctx, c, append(roots, s.allNames(roots, inos, nil)...), cursor, true, false, nil)
	})
	return cursor, err
}

// sendFileData sends the data of the file the write record r names: the
// ranges of plan p as they are now, read from the file whatever its name
// has become (the index keeps its paths).
func (s *shipper) sendFileData(c *Conn, r *journal.Record, p *batchPlan, repair map[string]bool) error {
	if err := c.Send(TFile, &FileHeader{Path: r.Path}); err != nil {
		return err
	}
	fd := s.openFile(r.Ino, r.Path)
	if fd < 0 {
		// The index may not have the file's latest names yet: fold the
		// journal in and look again.
		if err := s.e.cfg.Journal.Flush(context.Background()); err != nil {
			return err
		}
		fd = s.openFile(r.Ino, r.Path)
	}
	if fd < 0 {
		// No name reaches the file any more: a later record removes
		// it, and its data is needed nowhere.
		return c.Send(TFileEnd, &FileEnd{Missing: true})
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat inode %d: %w", r.Ino, err)
	}
	ranges := p.ranges
	if p.whole {
		ranges = []journal.Range{{0, st.Size}}
	}
	// Data read while an application writes could mix old and new bytes.
	// Up to stableMax bytes are read into memory and sent only if the
	// file's ctime did not move meanwhile (reread otherwise); beyond
	// that, or if the file never keeps still, what was read is sent and
	// the next batch, which the writes journaled, sends it again.
	var segs []segment
	for attempt := 0; ; attempt++ {
		var err error
		segs, err = readSegments(fd, &st, ranges, stableMax)
		if err != nil {
			return fmt.Errorf("read inode %d: %w", r.Ino, err)
		}
		var now unix.Stat_t
		if err := unix.Fstat(fd, &now); err != nil {
			return fmt.Errorf("stat inode %d: %w", r.Ino, err)
		}
		if segs == nil || (now.Ctim == st.Ctim && now.Size == st.Size) || attempt == 3 {
			break
		}
		st = now
		if p.whole {
			ranges = []journal.Range{{0, st.Size}}
		}
	}
	if segs == nil { // too big to hold: stream it
		return s.streamRanges(c, fd, r.Ino, &st, ranges)
	}
	for _, sg := range segs {
		var err error
		if sg.data == nil {
			err = c.SendRange(THole, sg.off, sg.n)
		} else {
			err = c.SendData(sg.off, sg.data)
			s.counts.bytes.Add(uint64(len(sg.data)))
		}
		if err != nil {
			return err
		}
	}
	return c.Send(TFileEnd, &FileEnd{Size: st.Size, Mtime: mtimeNs(&st)})
}

// stableMax is the most file data read into memory to be checked for a
// concurrent write before it is sent.
const stableMax = 8 << 20

// segment is a run of data (or a hole, data == nil) of a file.
type segment struct {
	off, n int64
	data   []byte
}

// readSegments reads ranges (clipped to the file's size) as data and
// hole segments, or returns nil if the data exceeds limit.
func readSegments(fd int, st *unix.Stat_t, ranges []journal.Range, limit int64) ([]segment, error) {
	var out []segment
	total := int64(0)
	err := eachSegment(fd, st.Size, ranges, func(off, n int64, hole bool) error {
		if hole {
			out = append(out, segment{off: off, n: n})
			return nil
		}
		for n > 0 {
			k := min(n, dataChunk)
			if total += k; total > limit {
				return errTooBig
			}
			buf := make([]byte, k)
			got, err := unix.Pread(fd, buf, off)
			if err != nil {
				return err
			}
			if got == 0 {
				return nil // shrank meanwhile
			}
			out = append(out, segment{off: off, n: int64(got), data: buf[:got]})
			off, n = off+int64(got), n-int64(got)
		}
		return nil
	})
	if errors.Is(err, errTooBig) {
		return nil, nil
	}
	if out == nil {
		out = []segment{}
	}
	return out, err
}

var errTooBig = errors.New("too big to hold")

// eachSegment splits ranges, clipped to size, into data and holes
// (SEEK_DATA, SEEK_HOLE).
func eachSegment(fd int, size int64, ranges []journal.Range, fn func(off, n int64, hole bool) error) error {
	for _, rg := range ranges {
		off, end := rg[0], min(rg.End(), size)
		for off < end {
			data, err := unix.Seek(fd, off, unix.SEEK_DATA)
			if err != nil || data >= end {
				data = end
			}
			if data > off {
				if err := fn(off, data-off, true); err != nil {
					return err
				}
				off = data
				continue
			}
			hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
			if err != nil || hole > end {
				hole = end
			}
			if err := fn(off, hole-off, false); err != nil {
				return err
			}
			off = hole
		}
	}
	return nil
}

// streamRanges sends a big file's ranges as it reads them.
func (s *shipper) streamRanges(c *Conn, fd int, ino uint64, st *unix.Stat_t, ranges []journal.Range) error {
	buf := make([]byte, dataChunk)
	err := eachSegment(fd, st.Size, ranges, func(off, n int64, hole bool) error {
		if hole {
			return c.SendRange(THole, off, n)
		}
		for n > 0 {
			got, err := unix.Pread(fd, buf[:min(n, int64(len(buf)))], off)
			if err != nil {
				return fmt.Errorf("read inode %d: %w", ino, err)
			}
			if got == 0 {
				return nil
			}
			if err := c.SendData(off, buf[:got]); err != nil {
				return err
			}
			s.counts.bytes.Add(uint64(got))
			off, n = off+int64(got), n-int64(got)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.Send(TFileEnd, &FileEnd{Size: st.Size, Mtime: mtimeNs(st)})
}

// openFile opens the regular file with inode ino for reading, by the
// paths the index knows for it, or -1.
func (s *shipper) openFile(ino uint64, hint string) int {
	paths := []string{hint}
	if st, err := s.e.cfg.Index.File(ino); err == nil && st != nil {
		paths = append(st.Paths, hint)
	}
	for _, p := range paths {
		fd, err := OpenBeneath(s.e.cfg.Root, p, unix.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Ino == ino && st.Mode&unix.S_IFMT == unix.S_IFREG {
			return fd
		}
		unix.Close(fd)
	}
	return -1
}

// fixups collects the paths a batch touched (and their parent
// directories), following the batch's renames, so the batch can end by
// giving them the primary's mtimes.
type fixups struct{ paths map[string]bool }

func newFixups() *fixups { return &fixups{paths: map[string]bool{}} }

func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func (f *fixups) add(r *journal.Record) {
	if r.Op == journal.OpRename {
		moved := map[string]string{}
		for p := range f.paths {
			switch {
			case within(p, r.Path) && r.Path != "":
				moved[p] = r.NewPath + strings.TrimPrefix(p, r.Path)
			case r.Flags&renameExchange != 0 && within(p, r.NewPath) && r.NewPath != "":
				moved[p] = r.Path + strings.TrimPrefix(p, r.NewPath)
			}
		}
		for from := range moved {
			delete(f.paths, from)
		}
		for _, to := range moved {
			f.paths[to] = true
		}
	}
	for _, p := range r.Paths() {
		f.paths[p] = true
		f.paths[parentOf(p)] = true
	}
}

// list gives each collected path that exists on the primary its mtime.
func (f *fixups) list(root int) []Fixup {
	var out []Fixup
	for p := range f.paths {
		if p == HiddenDir || strings.HasPrefix(p, HiddenDir+"/") {
			continue
		}
		var st unix.Stat_t
		var err error
		if p == "" {
			err = unix.Fstat(root, &st)
		} else {
			var dir int
			var name string
			if dir, name, err = OpenParent(root, p); err == nil {
				err = unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
				unix.Close(dir)
			}
		}
		if err == nil {
			out = append(out, Fixup{Path: p, Mtime: mtimeNs(&st)})
		}
	}
	slices.SortFunc(out, func(a, b Fixup) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// treeSync compares the trees at paths and ships what differs; with
// final, the replica's cursor becomes seq when it is done. full: the
// comparison makes a whole new copy (a full sync).
func (s *shipper) treeSync(ctx context.Context, c *Conn, paths []string, seq uint64, final, full bool, names linkNames) error {
	s.mu.Lock()
	s.tree = TreeProgress{Running: true}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.tree.Running = false
		s.mu.Unlock()
	}()
	t := &treeSender{root: s.e.cfg.Root, c: c, stats: &TreeProgress{}, names: names}
	stop := s.publishTree(t.stats)
	defer stop()
	if err := c.Send(TTree, &TreeBegin{Seq: seq, Full: full}); err != nil {
		return err
	}
	for _, p := range normalizeRoots(paths) {
		if err := t.syncRoot(ctx, p); err != nil {
			return fmt.Errorf("tree sync of %q: %w", p, err)
		}
	}
	if err := c.Send(TTreeEnd, &TreeEnd{Seq: seq, Final: final}); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return err
	}
	var ack Ack
	if err := c.Expect(TAck, &ack); err != nil {
		return fmt.Errorf("tree sync: %w", err)
	}
	if ack.Error != "" {
		return fmt.Errorf("tree sync: peer: %s", ack.Error)
	}
	return nil
}

// publishTree copies the sender's progress into the shipper's status
// every so often until stopped (the sender's counters are its own).
func (s *shipper) publishTree(p *TreeProgress) func() {
	done := make(chan struct{})
	var wg gosync.WaitGroup
	wg.Add(1)
	pub := func() {
		s.mu.Lock()
		s.tree.Dirs, s.tree.Files, s.tree.Bytes = p.Dirs, p.Files, p.Bytes
		s.mu.Unlock()
	}
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				pub()
			}
		}
	}()
	return func() { close(done); wg.Wait(); pub() }
}

// fullSync brings a new or diverged replica to a copy of the primary: a
// first walk of the whole tree while applications keep writing, then
// walks of only what changed meanwhile, and a last one with mutations
// held off so the copy matches one instant, whose seq becomes the cursor.
func (s *shipper) fullSync(ctx context.Context, c *Conn) (uint64, error) {
	s.setState(StateFullSync)
	j := s.e.cfg.Journal
	begin := time.Now()
	start, err := s.cutSeq(ctx)
	if err != nil {
		return 0, err
	}
	roots := []string{""}
	// Every name of each file with several, as the walks saw them, and
	// the files changed meanwhile: the last round compares all names of
	// those, so a file's names stay one file on the replica.
	names := linkNames{}
	changed := map[uint64]bool{}
	var touchedAll []string // paths changed while the walks ran
	const rounds = 3
	for round := 1; ; round++ {
		if round > 1 && (round >= rounds || len(roots) == 0) {
			var end uint64
			err := s.e.cfg.Source.Quiesce(ctx, func() error {
				end = j.Seq()
				if err := j.Flush(ctx); err != nil {
					return err
				}
				more, inos, err := s.touched(ctx, start, end)
				if err != nil {
					return err
				}
				for _, ino := range inos {
					changed[ino] = true
				}
				// Names of files with several, changed by a record
				// or now at a path one changed, are all compared.
				linked := s.allNames(append(touchedAll, more...), slices.Collect(maps.Keys(changed)), names)
				return s.treeSync(ctx, c, append(append(roots, more...), linked...), end, true, true, names)
			})
			if err != nil {
				return 0, err
			}
			s.log.Info("full tree sync done", "seq", end, "took", time.Since(begin).Round(time.Millisecond))
			s.acknowledged(end, time.Now())
			return end, nil
		}
		if err := s.treeSync(ctx, c, roots, start, false, true, names); err != nil {
			return 0, err
		}
		end, err := s.cutSeq(ctx)
		if err != nil {
			return 0, err
		}
		var inos []uint64
		if roots, inos, err = s.touched(ctx, start, end); err != nil {
			return 0, err
		}
		for _, ino := range inos {
			changed[ino] = true
		}
		touchedAll = append(touchedAll, roots...)
		start = end
	}
}

// allNames lists every name of the files that have several among inos
// and those at paths now (a rename exchange records one inode of the two
// it moves): the names a walk saw (names) and those the index knows. Call
// it with mutations held off.
func (s *shipper) allNames(paths []string, inos []uint64, names linkNames) []string {
	var out []string
	for _, p := range paths {
		var st unix.Stat_t
		dir, name, err := OpenParent(s.e.cfg.Root, p)
		if err != nil {
			continue
		}
		if unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1 {
			inos = append(inos, st.Ino)
		}
		unix.Close(dir)
	}
	for _, ino := range inos {
		more := names[ino]
		if st, err := s.e.cfg.Index.File(ino); err == nil && st != nil && len(st.Paths) > 1 {
			more = append(more, st.Paths...)
		}
		for _, p := range more {
			if checkPath(p) == nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// cutSeq cuts write sessions and returns the journal's seq once
// everything up to it is persisted.
func (s *shipper) cutSeq(ctx context.Context) (uint64, error) {
	if err := s.e.cfg.Source.Cut(); err != nil {
		return 0, err
	}
	seq := s.e.cfg.Journal.Seq()
	return seq, s.e.cfg.Journal.Flush(ctx)
}

// touched lists the paths records (from, to] changed, and the inodes of
// the files they changed.
func (s *shipper) touched(ctx context.Context, from, to uint64) ([]string, []uint64, error) {
	set := map[string]bool{}
	inos := map[uint64]bool{}
	err := s.e.historySince(ctx, from, func(r *journal.Record) bool {
		if r.Seq > to {
			return false
		}
		for _, p := range r.Paths() {
			set[p] = true
		}
		if r.Ino != 0 {
			inos[r.Ino] = true
		}
		return true
	})
	if err != nil {
		return nil, nil, err
	}
	out := make([]string, 0, len(set))
	for p := range set {
		if checkPath(p) == nil {
			out = append(out, p)
		}
	}
	return normalizeRoots(out), slices.Collect(maps.Keys(inos)), nil
}
