// Package journal owns georep's ordered change log and its durability rules.
//
// Every mutation that passes through the mount becomes a Record with an
// (epoch, seq) pair; seq grows by one per record and never repeats. A record
// is durable against SIGKILL of the daemon when Append returns: it has been
// copied into the write-ahead log, a file mapped into memory, so it is in
// the kernel's page cache (see wal.go and logfile.go). A background
// flusher moves records into badger/v4, where they are kept in seq order for
// readers, and hands each one to a Persister (the index) inside the same
// badger transaction, so the index is always exactly the fold of the
// persisted journal. The log is fdatasync'd every SyncInterval and by Sync,
// which bounds what a power loss (not a process kill) can take.
//
// Metadata operations are bracketed: Intent before the syscall, Commit (the
// record) or Abort after it. An intent that is neither committed nor aborted
// when the daemon dies becomes a resync record at recovery, so the journal
// always names every path whose state may differ from what it recorded.
package journal

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Entry is what the flusher hands to the Persister: a record, or the end of
// a write session that needed no closing record.
type Entry struct {
	Record *Record
	// Closed is set when a write session ended with no further ranges;
	// OpenSeq is the seq of the record that opened it.
	Closed  uint64
	OpenSeq uint64
	enc     []byte // the record's JSON, when the journal already encoded it
}

// Persister folds entries into derived state inside the flusher's badger
// transaction. It must be deterministic: recovery may replay entries.
type Persister func(txn *badger.Txn, e Entry) error

// Recoverer is asked at Open, after replay, which files still have open
// write sessions; each gets a whole-file write record.
type Recoverer func(txn *badger.Txn) ([]Record, error)

// Trimmer lists the keys of derived state that only records with seq ≤
// upTo need, for Trim to delete with them.
type Trimmer func(txn *badger.Txn, upTo uint64) ([][]byte, error)

// Options configure a Journal.
type Options struct {
	// Dir holds the write-ahead log.
	Dir string
	// DB stores the records under the "j/" key prefix and the journal's
	// metadata under "jm/".
	DB           *badger.DB
	Persist      Persister
	OpenSessions Recoverer
	Trim         Trimmer
	// SyncInterval is how often the log is fdatasync'd (default 100ms).
	SyncInterval time.Duration
	// BatchDelay is how long the flusher lets records accumulate before
	// persisting them (default 20ms); Flush cuts it short.
	BatchDelay time.Duration
	// RotateBytes is the log size past which it is rotated (default 64 MiB).
	RotateBytes int64
	Logger      *slog.Logger
}

// Journal is the ordered, durable change log of one node.
type Journal struct {
	opts Options
	log  *slog.Logger

	mu         sync.Mutex
	wal        *logFile
	buf        []byte // scratch for encoding frames
	seq        uint64
	epoch      uint64
	nextIntent uint64
	intents    map[uint64]walIntent
	queue      []Entry
	closed     bool
	// appended is closed when a record is appended, for Wait; nil when
	// nobody waits.
	appended chan struct{}

	persistMu sync.Mutex // serialises persisting (flusher, rotation, trim)
	persisted uint64
	trimmed   uint64     // records with seq ≤ trimmed are deleted
	cond      *sync.Cond // on mu: persisted moved

	kick   chan struct{}
	urgent chan struct{} // a reader waits in Flush
	stop   chan struct{}
	done   sync.WaitGroup
}

var (
	keyRecordPrefix = []byte("j/")
	keySeq          = []byte("jm/seq")
	keyEpoch        = []byte("jm/epoch")
	keyTrimmed      = []byte("jm/trimmed")
)

func recordKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), keyRecordPrefix...), seq)
}

// ErrClosed is returned by a closed journal.
var ErrClosed = errors.New("journal closed")

// Open recovers the journal from its log and badger, then starts the
// flusher. Recovery turns unfinished intents into resync records and open
// write sessions into whole-file write records.
func Open(opts Options) (*Journal, error) {
	if opts.SyncInterval == 0 {
		opts.SyncInterval = 100 * time.Millisecond
	}
	if opts.BatchDelay == 0 {
		opts.BatchDelay = 20 * time.Millisecond
	}
	if opts.RotateBytes == 0 {
		opts.RotateBytes = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Persist == nil {
		opts.Persist = func(*badger.Txn, Entry) error { return nil }
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open journal dir: %w", err)
	}
	j := &Journal{
		opts:    opts,
		log:     opts.Logger.With("component", "journal"),
		intents: map[uint64]walIntent{},
		kick:    make(chan struct{}, 1),
		urgent:  make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	j.cond = sync.NewCond(&j.mu)
	if err := j.loadMeta(); err != nil {
		return nil, err
	}
	pending, err := j.replay()
	if err != nil {
		return nil, err
	}
	if err := j.startWAL(); err != nil {
		return nil, err
	}
	j.done.Add(2)
	go j.flusher()
	go j.syncer()
	for i := range pending {
		if _, err := j.commit(pending[i].intent, &pending[i].rec); err != nil {
			j.Close()
			return nil, fmt.Errorf("recover journal: %w", err)
		}
	}
	if len(pending) > 0 {
		j.log.Warn("journal recovered after an unclean stop", "uncertain_paths", len(pending))
	}
	return j, nil
}

func (j *Journal) loadMeta() error {
	return j.opts.DB.View(func(txn *badger.Txn) error {
		var err error
		if j.seq, err = getU64(txn, keySeq); err != nil {
			return fmt.Errorf("read journal seq: %w", err)
		}
		if j.epoch, err = getU64(txn, keyEpoch); err != nil {
			return fmt.Errorf("read journal epoch: %w", err)
		}
		if j.epoch == 0 {
			j.epoch = 1
		}
		if j.trimmed, err = getU64(txn, keyTrimmed); err != nil {
			return fmt.Errorf("read journal trim mark: %w", err)
		}
		j.persisted = j.seq
		return nil
	})
}

func getU64(txn *badger.Txn, key []byte) (uint64, error) {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	v, err := it.ValueCopy(nil)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("key %s: bad value length %d", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func (j *Journal) walPath() string { return filepath.Join(j.opts.Dir, "wal") }

// recovered is a record recovery must append, committing intent (0: none).
type recovered struct {
	intent uint64
	rec    Record
}

// replay folds the log left by the previous run into badger and returns the
// records recovery must append: resyncs for unfinished intents, whole-file
// writes for open sessions.
func (j *Journal) replay() ([]recovered, error) {
	data, err := os.ReadFile(j.walPath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read journal log: %w", err)
	}
	entries, valid := decodeWAL(data)
	if tail := data[valid:]; slices.ContainsFunc(tail, func(b byte) bool { return b != 0 }) {
		// The log ends at the first frame that is not whole: a frame
		// being copied in when the daemon died. The rest is unused.
		j.log.Warn("journal log has a torn tail; ignoring it", "offset", valid)
	}
	intents := map[uint64]walIntent{}
	var batch []Entry
	for _, e := range entries {
		switch e.kind {
		case kindIntent:
			intents[e.intent.ID] = *e.intent
		case kindDone:
			delete(intents, e.intentID)
		case kindRecord:
			delete(intents, e.intentID)
			if e.rec.Seq > j.seq {
				batch = append(batch, Entry{Record: e.rec})
				j.seq = e.rec.Seq
			}
		case kindClose:
			batch = append(batch, Entry{Closed: e.ino, OpenSeq: e.openSeq})
		}
	}
	_, last, err := j.persist(batch)
	if err != nil {
		return nil, fmt.Errorf("replay journal log: %w", err)
	}
	j.advanceLocked(last) // nothing runs concurrently yet
	// startWAL replaces the old log before the resync records are
	// appended: the unfinished intents are carried into the new log and
	// the last resync of each commits it, so a crash in between resyncs
	// the paths again instead of forgetting them.
	var pending []recovered
	ids := slices.Sorted(maps.Keys(intents))
	for _, id := range ids {
		in := intents[id]
		if len(in.Paths) == 0 {
			continue
		}
		j.intents[id] = in
		j.nextIntent = max(j.nextIntent, id)
		for i, p := range in.Paths {
			r := recovered{rec: Record{Op: OpResync, Path: p}}
			if i == len(in.Paths)-1 {
				r.intent = id
			}
			pending = append(pending, r)
		}
	}
	if j.opts.OpenSessions != nil {
		err := j.opts.DB.View(func(txn *badger.Txn) error {
			recs, err := j.opts.OpenSessions(txn)
			for _, r := range recs {
				pending = append(pending, recovered{rec: r})
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("recover write sessions: %w", err)
		}
	}
	if err := j.opts.DB.Sync(); err != nil {
		return nil, fmt.Errorf("sync journal db: %w", err)
	}
	return pending, nil
}

// startWAL replaces the log with an empty one holding the open intents.
// The caller guarantees everything in the old log is persisted and synced.
func (j *Journal) startWAL() error {
	tmp := j.walPath() + ".new"
	l, err := createLog(tmp)
	if err != nil {
		return err
	}
	var buf []byte
	for _, in := range j.intents {
		js, err := json.Marshal(in)
		if err != nil {
			l.close()
			return fmt.Errorf("encode intent: %w", err)
		}
		buf = appendFrame(buf, kindIntent, js)
	}
	if err := l.append(buf); err != nil {
		l.close()
		return err
	}
	if err := l.f.Sync(); err != nil {
		l.close()
		return fmt.Errorf("sync journal log: %w", err)
	}
	if err := os.Rename(tmp, j.walPath()); err != nil {
		l.close()
		return fmt.Errorf("install journal log: %w", err)
	}
	if err := syncDir(j.opts.Dir); err != nil {
		l.close()
		return err
	}
	if j.wal != nil {
		j.wal.close()
	}
	l.dirty = false
	j.wal = l
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// appendLocked appends the frame that add encodes to the log. j.mu must
// be held. On error nothing was appended.
func (j *Journal) appendLocked(add func([]byte) ([]byte, error)) error {
	if j.closed {
		return ErrClosed
	}
	var err error
	if j.buf, err = add(j.buf[:0]); err != nil {
		return err
	}
	return j.wal.append(j.buf)
}

func (j *Journal) signal() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// Append assigns the next (epoch, seq) to r, makes it durable against a
// process kill and queues it for badger. It returns the seq.
func (j *Journal) Append(r *Record) (uint64, error) {
	return j.commit(0, r)
}

// Intent records that a metadata operation on paths is about to run. Call
// Commit with its record after the operation succeeded, Abort after it
// failed.
func (j *Journal) Intent(op Op, paths ...string) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	in := walIntent{ID: j.nextIntent + 1, Op: op, Paths: paths}
	js, err := json.Marshal(in)
	if err != nil {
		return 0, fmt.Errorf("encode intent: %w", err)
	}
	err = j.appendLocked(func(b []byte) ([]byte, error) { return appendFrame(b, kindIntent, js), nil })
	if err != nil {
		return 0, err
	}
	j.nextIntent = in.ID
	j.intents[in.ID] = in
	return in.ID, nil
}

// Commit appends r as the outcome of intent id.
func (j *Journal) Commit(id uint64, r *Record) (uint64, error) {
	return j.commit(id, r)
}

// Abort records that intent id's operation failed and changed nothing.
func (j *Journal) Abort(id uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	err := j.appendLocked(func(b []byte) ([]byte, error) { return appendFrame(b, kindDone, u64(id)), nil })
	if err != nil {
		return err
	}
	delete(j.intents, id)
	return nil
}

func (j *Journal) commit(id uint64, r *Record) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r.Seq = j.seq + 1
	r.Epoch = j.epoch
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	var js []byte
	err := j.appendLocked(func(b []byte) ([]byte, error) {
		b, err := encodeRecord(b, id, r)
		if err == nil {
			// The JSON follows the frame header, kind and intent id;
			// badger stores the same bytes.
			js = append([]byte(nil), b[frameHeader+1+8:]...)
		}
		return b, err
	})
	if err != nil {
		return 0, err
	}
	j.seq = r.Seq
	delete(j.intents, id)
	j.queue = append(j.queue, Entry{Record: r, enc: js})
	j.signal()
	if j.appended != nil {
		close(j.appended)
		j.appended = nil
	}
	return r.Seq, nil
}

// Wait blocks until a record with seq > after has been appended, or ctx
// ends.
func (j *Journal) Wait(ctx context.Context, after uint64) error {
	for {
		j.mu.Lock()
		if j.seq > after {
			j.mu.Unlock()
			return nil
		}
		if j.closed {
			j.mu.Unlock()
			return ErrClosed
		}
		if j.appended == nil {
			j.appended = make(chan struct{})
		}
		ch := j.appended
		j.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// CloseSession records that the write session opened by record openSeq on
// inode ino ended without further ranges.
func (j *Journal) CloseSession(ino, openSeq uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	err := j.appendLocked(func(b []byte) ([]byte, error) {
		return appendFrame(b, kindClose, u64(ino), u64(openSeq)), nil
	})
	if err != nil {
		return err
	}
	j.queue = append(j.queue, Entry{Closed: ino, OpenSeq: openSeq})
	j.signal()
	return nil
}

// Seq returns the last assigned seq.
func (j *Journal) Seq() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.seq
}

// Epoch returns the epoch stamped on new records.
func (j *Journal) Epoch() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.epoch
}

// SetEpoch persists a new epoch; later records carry it.
func (j *Journal) SetEpoch(e uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	err := j.opts.DB.Update(func(txn *badger.Txn) error {
		return txn.Set(keyEpoch, binary.BigEndian.AppendUint64(nil, e))
	})
	if err != nil {
		return fmt.Errorf("persist epoch %d: %w", e, err)
	}
	j.epoch = e
	return nil
}

// Sync makes every appended entry durable against power loss.
func (j *Journal) Sync() error {
	j.mu.Lock()
	l := j.wal
	if l == nil || !l.dirty {
		j.mu.Unlock()
		return nil
	}
	l.dirty = false
	j.mu.Unlock()
	// fdatasync writes out the pages the mapping dirtied.
	if err := l.f.Sync(); err != nil {
		if errors.Is(err, os.ErrClosed) {
			// A rotation replaced the log meanwhile; it synced badger
			// and the new log before closing this one.
			return nil
		}
		j.mu.Lock()
		if j.wal == l {
			l.dirty = true // try again at the next sync
		}
		j.mu.Unlock()
		return fmt.Errorf("sync journal log: %w", err)
	}
	return nil
}

func (j *Journal) syncer() {
	defer j.done.Done()
	t := time.NewTicker(j.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			if err := j.Sync(); err != nil {
				j.log.Error("periodic journal sync failed", "err", err)
			}
		}
	}
}

func (j *Journal) flusher() {
	defer j.done.Done()
	batch := time.NewTimer(time.Hour)
	batch.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-j.kick:
		case <-j.urgent:
		}
		// Let a burst accumulate, so one badger transaction carries many
		// records (badger's per-transaction cost would otherwise compete
		// with the mount for the CPU), unless a reader waits in Flush.
		batch.Reset(j.opts.BatchDelay)
		select {
		case <-j.stop:
			return
		case <-j.urgent:
			batch.Stop()
		case <-batch.C:
		}
		if err := j.drain(); err != nil {
			j.log.Error("persisting journal failed", "err", err)
			time.Sleep(100 * time.Millisecond)
			j.signal()
			continue
		}
		if err := j.maybeRotate(); err != nil {
			j.log.Error("rotating journal log failed", "err", err)
		}
	}
}

// drain persists the queued entries.
func (j *Journal) drain() error {
	j.persistMu.Lock()
	defer j.persistMu.Unlock()
	j.mu.Lock()
	q := j.queue
	j.queue = nil
	j.mu.Unlock()
	if len(q) == 0 {
		return nil
	}
	n, last, err := j.persist(q)
	j.mu.Lock()
	defer j.mu.Unlock()
	j.advanceLocked(last)
	if err != nil {
		// Requeue only what is not in badger: the Persister must not
		// fold an entry twice.
		j.queue = append(q[n:], j.queue...)
	}
	return err
}

// persist writes entries to badger in transactions of bounded size. It
// returns how many entries of q it persisted (all of them unless err is
// set) and the seq of the last record among them; the caller advances the
// persisted mark under j.mu.
func (j *Journal) persist(q []Entry) (done int, lastSeq uint64, err error) {
	for len(q) > 0 {
		n := min(len(q), 512)
		chunk := q[:n]
		var last uint64
		err := j.opts.DB.Update(func(txn *badger.Txn) error {
			for _, e := range chunk {
				if e.Record != nil {
					v := e.enc
					if v == nil {
						var err error
						if v, err = json.Marshal(e.Record); err != nil {
							return fmt.Errorf("encode record %d: %w", e.Record.Seq, err)
						}
					}
					if err := txn.Set(recordKey(e.Record.Seq), v); err != nil {
						return fmt.Errorf("store record %d: %w", e.Record.Seq, err)
					}
					last = e.Record.Seq
				}
				if err := j.opts.Persist(txn, e); err != nil {
					return err
				}
			}
			if last > 0 {
				return txn.Set(keySeq, binary.BigEndian.AppendUint64(nil, last))
			}
			return nil
		})
		if err != nil {
			return done, lastSeq, fmt.Errorf("persist %d journal entries: %w", n, err)
		}
		if last > 0 {
			lastSeq = last
		}
		q = q[n:]
		done += n
	}
	return done, lastSeq, nil
}

// advanceLocked moves the persisted mark to seq (0: nothing persisted) and
// wakes Flush. j.mu must be held.
func (j *Journal) advanceLocked(seq uint64) {
	if seq > j.persisted {
		j.persisted = seq
		j.cond.Broadcast()
	}
}

// persistQueueLocked persists every queued entry and syncs badger
// (persistMu and mu held).
func (j *Journal) persistQueueLocked() error {
	n, last, err := j.persist(j.queue)
	j.queue = j.queue[n:]
	j.advanceLocked(last)
	if err != nil {
		return err
	}
	return j.opts.DB.Sync()
}

func (j *Journal) maybeRotate() error {
	j.mu.Lock()
	big := j.wal.off > int(j.opts.RotateBytes)
	j.mu.Unlock()
	if !big {
		return nil
	}
	// Hold mu throughout so no entry lands in the old log after the final
	// drain: appenders wait for the rotation (a few milliseconds).
	j.persistMu.Lock()
	defer j.persistMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.persistQueueLocked(); err != nil {
		return fmt.Errorf("rotate journal log: %w", err)
	}
	j.queue = nil
	return j.startWAL()
}

// Flush waits until every record appended before the call is in badger.
func (j *Journal) Flush(ctx context.Context) error {
	j.mu.Lock()
	target := j.seq
	j.mu.Unlock()
	select {
	case j.urgent <- struct{}{}:
	default:
	}
	stop := context.AfterFunc(ctx, func() {
		j.mu.Lock()
		j.cond.Broadcast()
		j.mu.Unlock()
	})
	defer stop()
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.persisted < target {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("flush journal to seq %d: %w", target, err)
		}
		if j.closed {
			return ErrClosed
		}
		j.cond.Wait()
	}
	return nil
}

// Since calls fn for every persisted record with seq > after, in order,
// until fn returns false. Call Flush first to include the newest records.
func (j *Journal) Since(ctx context.Context, after uint64, fn func(*Record) bool) error {
	return j.opts.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: keyRecordPrefix, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Seek(recordKey(after + 1)); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var r Record
			err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &r) })
			if err != nil {
				return fmt.Errorf("read record %x: %w", it.Item().Key(), err)
			}
			if !fn(&r) {
				return nil
			}
		}
		return nil
	})
}

// Trimmed returns the seq up to which records have been deleted: the
// journal holds every record after it.
func (j *Journal) Trimmed() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.trimmed
}

// Trim deletes the records with seq ≤ upTo (no further than what is
// persisted), with the derived state the Trimmer names. The sync engine
// calls it with the lowest seq every secondary has acknowledged.
func (j *Journal) Trim(ctx context.Context, upTo uint64) error {
	// Holding persistMu keeps the flusher from folding new entries into
	// state the Trimmer is deciding to delete.
	j.persistMu.Lock()
	defer j.persistMu.Unlock()
	j.mu.Lock()
	upTo = min(upTo, j.persisted)
	from := j.trimmed
	j.mu.Unlock()
	if upTo <= from {
		return nil
	}
	var derived [][]byte
	if j.opts.Trim != nil {
		err := j.opts.DB.View(func(txn *badger.Txn) error {
			var err error
			derived, err = j.opts.Trim(txn, upTo)
			return err
		})
		if err != nil {
			return fmt.Errorf("trim journal to seq %d: %w", upTo, err)
		}
	}
	wb := j.opts.DB.NewWriteBatch()
	defer wb.Cancel()
	for s := from + 1; s <= upTo; s++ {
		if s%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("trim journal to seq %d: %w", upTo, err)
			}
		}
		if err := wb.Delete(recordKey(s)); err != nil {
			return fmt.Errorf("trim journal record %d: %w", s, err)
		}
	}
	for _, k := range derived {
		if err := wb.Delete(k); err != nil {
			return fmt.Errorf("trim journal to seq %d: %w", upTo, err)
		}
	}
	if err := wb.Set(keyTrimmed, binary.BigEndian.AppendUint64(nil, upTo)); err != nil {
		return fmt.Errorf("trim journal to seq %d: %w", upTo, err)
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("trim journal to seq %d: %w", upTo, err)
	}
	j.mu.Lock()
	j.trimmed = upTo
	j.mu.Unlock()
	return nil
}

// Reset starts the journal afresh at (seq, epoch): every record and the
// derived state the Trimmer names are deleted, and the next record gets
// seq+1. A secondary promoted to primary calls it: its own history is what
// it received, up to its cursor seq, and its journal continues from there.
// No mutation may be in flight (the caller has fenced or frozen the
// mount); an operation with an open intent makes Reset fail.
func (j *Journal) Reset(ctx context.Context, seq, epoch uint64) error {
	j.persistMu.Lock()
	defer j.persistMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	if len(j.intents) > 0 {
		return fmt.Errorf("reset journal: %d operations are in flight", len(j.intents))
	}
	if err := j.persistQueueLocked(); err != nil {
		return fmt.Errorf("reset journal: %w", err)
	}
	// The log is emptied first: records left in it would otherwise be
	// replayed past the new seq after a crash. A crash between here and
	// the metadata update below leaves the journal as it was.
	if err := j.startWAL(); err != nil {
		return fmt.Errorf("reset journal: %w", err)
	}
	var derived [][]byte
	if j.opts.Trim != nil {
		err := j.opts.DB.View(func(txn *badger.Txn) error {
			var err error
			derived, err = j.opts.Trim(txn, math.MaxUint64)
			return err
		})
		if err != nil {
			return fmt.Errorf("reset journal: %w", err)
		}
	}
	var keys [][]byte
	err := j.opts.DB.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: keyRecordPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reset journal: %w", err)
	}
	wb := j.opts.DB.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range append(keys, derived...) {
		if err := wb.Delete(k); err != nil {
			return fmt.Errorf("reset journal: %w", err)
		}
	}
	for k, v := range map[string]uint64{string(keySeq): seq, string(keyEpoch): epoch, string(keyTrimmed): seq} {
		if err := wb.Set([]byte(k), binary.BigEndian.AppendUint64(nil, v)); err != nil {
			return fmt.Errorf("reset journal: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("reset journal: %w", err)
	}
	if err := j.opts.DB.Sync(); err != nil {
		return fmt.Errorf("reset journal: %w", err)
	}
	j.seq, j.epoch, j.trimmed, j.persisted = seq, epoch, seq, seq
	j.cond.Broadcast()
	return nil
}

// Close stops the flusher after persisting everything, and syncs the log.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.mu.Unlock()
	derr := j.drain()
	serr := j.Sync()
	j.mu.Lock()
	j.closed = true
	j.cond.Broadcast()
	if j.appended != nil {
		close(j.appended)
		j.appended = nil
	}
	j.mu.Unlock()
	close(j.stop)
	j.done.Wait()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.wal != nil {
		j.wal.close()
		j.wal = nil
	}
	return errors.Join(derr, serr)
}
