package journal_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/georep/georep/index"
	"github.com/georep/georep/journal"
)

// node is a journal wired to the index, as the daemon wires them.
type node struct {
	t      *testing.T
	walDir string
	dbDir  string
	db     *badger.DB
	x      *index.Index
	j      *journal.Journal
}

func newNode(t *testing.T) *node {
	dir := t.TempDir()
	n := &node{t: t, walDir: filepath.Join(dir, "journal"), dbDir: filepath.Join(dir, "db")}
	db, err := badger.Open(badger.DefaultOptions(n.dbDir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	n.db = db
	n.x = index.New(db)
	t.Cleanup(func() {
		if n.j != nil {
			n.j.Close()
		}
		n.db.Close()
	})
	return n
}

func (n *node) writeWAL(b []byte) {
	n.t.Helper()
	if err := os.MkdirAll(n.walDir, 0o700); err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.walDir, "wal"), b, 0o600); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) open() *journal.Journal {
	n.t.Helper()
	if n.j != nil {
		if err := n.j.Close(); err != nil {
			n.t.Fatal(err)
		}
	}
	j, err := journal.Open(journal.Options{
		Dir:          n.walDir,
		DB:           n.db,
		Persist:      n.x.Apply,
		OpenSessions: n.x.OpenSessions,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		n.t.Fatalf("open journal: %v", err)
	}
	n.j = j
	return j
}

func (n *node) records() []journal.Record {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.j.Flush(ctx); err != nil {
		n.t.Fatal(err)
	}
	var out []journal.Record
	if err := n.j.Since(ctx, 0, func(r *journal.Record) bool { out = append(out, *r); return true }); err != nil {
		n.t.Fatal(err)
	}
	return out
}

func (n *node) state(ino uint64) *index.FileState {
	n.t.Helper()
	sts, err := n.x.Dirty()
	if err != nil {
		n.t.Fatal(err)
	}
	for i := range sts {
		if sts[i].Ino == ino {
			return &sts[i]
		}
	}
	return nil
}

func (n *node) openSessions() []journal.Record {
	n.t.Helper()
	var out []journal.Record
	err := n.db.View(func(txn *badger.Txn) error {
		var err error
		out, err = n.x.OpenSessions(txn)
		return err
	})
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

func wholeWrites(recs []journal.Record) []journal.Record {
	var out []journal.Record
	for _, r := range recs {
		if r.Op == journal.OpWrite && r.Whole {
			out = append(out, r)
		}
	}
	return out
}

type logBuilder struct {
	t   *testing.T
	buf []byte
}

func (l *logBuilder) write(seq, ino uint64, path string, open bool, rs ...journal.Range) *logBuilder {
	var err error
	l.buf, err = journal.EncodeRecordFrame(l.buf, 0, &journal.Record{
		Seq: seq, Epoch: 1, Time: time.Unix(int64(seq), 0).UTC(),
		Op: journal.OpWrite, Path: path, Ino: ino, Ranges: rs, Open: open,
	})
	if err != nil {
		l.t.Fatal(err)
	}
	return l
}

func (l *logBuilder) close(ino, openSeq uint64) *logBuilder {
	l.buf = journal.CloseFrame(l.buf, ino, openSeq)
	return l
}

// TestRecoverOpenSessionWholeWrite: (e) a session opened and never closed
// becomes a whole-file write at recovery.
func TestRecoverOpenSessionWholeWrite(t *testing.T) {
	n := newNode(t)
	l := &logBuilder{t: t}
	l.write(1, 42, "dir/f", true, journal.Range{0, 100})
	n.writeWAL(l.buf)
	n.open()

	recs := n.records()
	if len(recs) != 2 {
		t.Fatalf("got %d records, want the open write and a whole-file write: %v", len(recs), recs)
	}
	w := recs[1]
	if w.Seq != 2 || w.Op != journal.OpWrite || !w.Whole || w.Open || w.Ino != 42 || w.Path != "dir/f" {
		t.Fatalf("recovery record %v", w.String())
	}
	st := n.state(42)
	if st == nil || !st.Whole || st.OpenSeq != 0 || !slices.Equal(st.Dirty, []journal.Range{{0, 100}}) {
		t.Fatalf("index state %+v", st)
	}
	if s := n.openSessions(); len(s) != 0 {
		t.Fatalf("sessions still open after recovery: %v", s)
	}
	// A clean reopen does not repeat it.
	n.open()
	if recs := n.records(); len(recs) != 2 {
		t.Fatalf("clean reopen added records: %v", recs[2:])
	}
}

// TestRecoverClosedSession: a close entry with the matching ino and
// openSeq (or a closing write record) ends the session; nothing is added.
func TestRecoverClosedSession(t *testing.T) {
	t.Run("close entry", func(t *testing.T) {
		n := newNode(t)
		l := &logBuilder{t: t}
		l.write(1, 42, "f", true, journal.Range{0, 10}).close(42, 1)
		n.writeWAL(l.buf)
		n.open()
		recs := n.records()
		if len(recs) != 1 || len(wholeWrites(recs)) != 0 {
			t.Fatalf("records %v", recs)
		}
		if st := n.state(42); st == nil || st.Whole || st.OpenSeq != 0 {
			t.Fatalf("index state %+v", st)
		}
	})
	t.Run("closing write record", func(t *testing.T) {
		n := newNode(t)
		l := &logBuilder{t: t}
		l.write(1, 42, "f", true, journal.Range{0, 10}).write(2, 42, "f", false, journal.Range{10, 10})
		n.writeWAL(l.buf)
		n.open()
		recs := n.records()
		if len(recs) != 2 || len(wholeWrites(recs)) != 0 {
			t.Fatalf("records %v", recs)
		}
		if st := n.state(42); st == nil || st.Whole || !slices.Equal(st.Dirty, []journal.Range{{0, 20}}) {
			t.Fatalf("index state %+v", st)
		}
	})
	t.Run("close of another session", func(t *testing.T) {
		// A stale close (older openSeq) or one for another inode does
		// not end the session.
		n := newNode(t)
		l := &logBuilder{t: t}
		l.write(1, 42, "f", true, journal.Range{0, 10}).close(42, 1)
		l.write(2, 42, "f", true, journal.Range{0, 10}).close(42, 1).close(43, 2)
		n.writeWAL(l.buf)
		n.open()
		ws := wholeWrites(n.records())
		if len(ws) != 1 || ws[0].Ino != 42 {
			t.Fatalf("whole writes %v", ws)
		}
	})
	t.Run("torn close", func(t *testing.T) {
		n := newNode(t)
		l := &logBuilder{t: t}
		l.write(1, 42, "f", true, journal.Range{0, 10})
		whole := len(l.buf)
		l.close(42, 1)
		n.writeWAL(l.buf[:whole+10])
		n.open()
		if ws := wholeWrites(n.records()); len(ws) != 1 {
			t.Fatalf("whole writes %v", ws)
		}
	})
}

// TestRecoverSessionsMixed: several files, some sessions closed.
func TestRecoverSessionsMixed(t *testing.T) {
	n := newNode(t)
	l := &logBuilder{t: t}
	l.write(1, 1, "a", true, journal.Range{0, 1})
	l.write(2, 2, "b", true, journal.Range{0, 1})
	l.write(3, 3, "c", true, journal.Range{0, 1})
	l.close(2, 2)
	l.write(4, 3, "c", false, journal.Range{5, 1})
	l.write(5, 4, "d", true, journal.Range{0, 1})
	n.writeWAL(l.buf)
	n.open()
	var inos []uint64
	for _, w := range wholeWrites(n.records()) {
		inos = append(inos, w.Ino)
	}
	slices.Sort(inos)
	if !slices.Equal(inos, []uint64{1, 4}) {
		t.Fatalf("whole writes for inodes %v, want [1 4]", inos)
	}
}

// TestRecoverSessionOpenInBadger: the open record reached badger in an
// earlier run; the log repeats it with a close entry after it. The close is
// replayed even though the record itself is not.
func TestRecoverSessionOpenInBadger(t *testing.T) {
	n := newNode(t)
	j := n.open()
	seq, err := j.Append(&journal.Record{Op: journal.OpWrite, Path: "f", Ino: 42, Ranges: []journal.Range{{0, 8}}, Open: true})
	if err != nil {
		t.Fatal(err)
	}
	recs := n.records()
	if len(recs) != 1 {
		t.Fatalf("records %v", recs)
	}
	if s := n.openSessions(); len(s) != 1 || s[0].Ino != 42 || !s[0].Whole {
		t.Fatalf("open sessions %v", s)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	n.j = nil

	l := &logBuilder{t: t}
	if l.buf, err = journal.EncodeRecordFrame(nil, 0, &recs[0]); err != nil {
		t.Fatal(err)
	}
	l.close(42, seq)
	n.writeWAL(l.buf)
	n.open()
	if recs := n.records(); len(recs) != 1 {
		t.Fatalf("records after recovery %v", recs)
	}
	if st := n.state(42); st == nil || st.OpenSeq != 0 || st.Whole {
		t.Fatalf("index state %+v", st)
	}
}

// TestSessionLeftOpenAtCleanClose: a session still open at a clean Close
// is also recovered as a whole-file write on the next Open: the journal
// cannot know what the writes after the open record touched.
func TestSessionLeftOpenAtCleanClose(t *testing.T) {
	n := newNode(t)
	j := n.open()
	if _, err := j.Append(&journal.Record{Op: journal.OpWrite, Path: "f", Ino: 7, Ranges: []journal.Range{{0, 8}}, Open: true}); err != nil {
		t.Fatal(err)
	}
	n.open()
	ws := wholeWrites(n.records())
	if len(ws) != 1 || ws[0].Ino != 7 || ws[0].Path != "f" {
		t.Fatalf("whole writes %v", ws)
	}
}

// TestPersistRetryDoesNotReapply: when one badger transaction of a drain
// fails, the retry must not fold the entries of the drain's earlier,
// committed transactions a second time (the index is not idempotent: a
// rename applied twice drops the file it moved). The persister counts, in
// the transaction itself, how often each record was folded.
func TestPersistRetryDoesNotReapply(t *testing.T) {
	n := newNode(t)
	const total = 1200 // the second drain spans more than one transaction
	release := make(chan struct{})
	var failed atomic.Bool
	countKey := func(seq uint64) []byte { return []byte("test/" + strconv.FormatUint(seq, 10)) }
	persist := func(txn *badger.Txn, e journal.Entry) error {
		if e.Record == nil {
			return n.x.Apply(txn, e)
		}
		seq := e.Record.Seq
		if seq == 1 {
			<-release // hold the first drain until every record is queued
		}
		if seq == total && !failed.Swap(true) {
			return errors.New("transient failure")
		}
		c := byte(0)
		if it, err := txn.Get(countKey(seq)); err == nil {
			v, err := it.ValueCopy(nil)
			if err != nil {
				return err
			}
			c = v[0]
		}
		if err := txn.Set(countKey(seq), []byte{c + 1}); err != nil {
			return err
		}
		return n.x.Apply(txn, e)
	}
	j, err := journal.Open(journal.Options{
		Dir: n.walDir, DB: n.db, Persist: persist, OpenSessions: n.x.OpenSessions,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	n.j = j
	if _, err := j.Append(&journal.Record{Op: journal.OpWrite, Path: "p0", Ino: 1, Ranges: []journal.Range{{0, 1}}}); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < total; i++ {
		if _, err := j.Append(&journal.Record{Op: journal.OpCreate, Path: "c" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := j.Append(&journal.Record{Op: journal.OpRename, Path: "p0", NewPath: "p1"}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if recs := n.records(); len(recs) != total {
		t.Fatalf("%d records, want %d", len(recs), total)
	}
	if !failed.Load() {
		t.Fatal("the injected failure did not happen")
	}
	err = n.db.View(func(txn *badger.Txn) error {
		for seq := uint64(1); seq <= total; seq++ {
			it, err := txn.Get(countKey(seq))
			if err != nil {
				return fmt.Errorf("seq %d: %w", seq, err)
			}
			v, err := it.ValueCopy(nil)
			if err != nil {
				return err
			}
			if v[0] != 1 {
				return fmt.Errorf("seq %d folded %d times", seq, v[0])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := n.state(1); st == nil || !slices.Equal(st.Paths, []string{"p1"}) {
		t.Fatalf("file state %+v, want it at p1", st)
	}
}
