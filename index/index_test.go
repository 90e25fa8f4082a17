package index

import (
	"cmp"
	"encoding/binary"
	"maps"
	"slices"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/georep/georep/journal"
)

type fixture struct {
	t   *testing.T
	db  *badger.DB
	x   *Index
	seq uint64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &fixture{t: t, db: db, x: New(db)}
}

// entry applies e in its own transaction, as the journal's flusher does,
// then checks the index's invariants.
func (f *fixture) entry(e journal.Entry) {
	f.t.Helper()
	if err := f.db.Update(func(txn *badger.Txn) error { return f.x.Apply(txn, e) }); err != nil {
		f.t.Fatalf("apply %+v: %v", e, err)
	}
	f.check()
}

// apply stamps r with the next seq and applies it. It returns the seq.
func (f *fixture) apply(r journal.Record) uint64 {
	f.t.Helper()
	f.seq++
	r.Seq, r.Epoch = f.seq, 3
	r.Time = time.Date(2024, 5, 6, 7, 8, 9, int(f.seq), time.UTC)
	f.entry(journal.Entry{Record: &r})
	return r.Seq
}

func (f *fixture) write(ino uint64, path string, off, n int64) uint64 {
	return f.apply(journal.Record{Op: journal.OpWrite, Path: path, Ino: ino, Ranges: []journal.Range{{off, n}}})
}

func (f *fixture) rename(from, to string, flags uint32) uint64 {
	return f.apply(journal.Record{Op: journal.OpRename, Path: from, NewPath: to, Flags: flags})
}

func (f *fixture) link(ino uint64, from, to string) uint64 {
	return f.apply(journal.Record{Op: journal.OpLink, Path: from, NewPath: to, Ino: ino})
}

func (f *fixture) op(op journal.Op, path string) uint64 {
	return f.apply(journal.Record{Op: op, Path: path})
}

// states returns the file states by inode.
func (f *fixture) states() map[uint64]FileState {
	f.t.Helper()
	sts, err := f.x.Dirty()
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[uint64]FileState{}
	for _, st := range sts {
		out[st.Ino] = st
	}
	return out
}

func (f *fixture) state(ino uint64) *FileState {
	f.t.Helper()
	st, ok := f.states()[ino]
	if !ok {
		return nil
	}
	return &st
}

// pathIndex returns the p/ entries.
func (f *fixture) pathIndex() map[string]uint64 {
	f.t.Helper()
	out := map[string]uint64{}
	err := f.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixPath, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(v) != 8 {
				f.t.Fatalf("path entry %q: %d-byte value", it.Item().Key(), len(v))
			}
			out[string(it.Item().Key()[len(prefixPath):])] = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// check verifies that the file states and the path entries agree: every
// state has distinct paths, each with an entry naming its inode, and every
// path entry is a path of its inode's state.
func (f *fixture) check() {
	f.t.Helper()
	sts := f.states()
	idx := f.pathIndex()
	for ino, st := range sts {
		if len(st.Paths) == 0 {
			f.t.Fatalf("state %d has no paths but was kept", ino)
		}
		if len(slices.Compact(slices.Sorted(slices.Values(st.Paths)))) != len(st.Paths) {
			f.t.Fatalf("state %d has duplicate paths %q", ino, st.Paths)
		}
		for _, p := range st.Paths {
			if idx[p] != ino {
				f.t.Fatalf("state %d path %q: path entry names inode %d", ino, p, idx[p])
			}
		}
	}
	for p, ino := range idx {
		st, ok := sts[ino]
		if !ok || !slices.Contains(st.Paths, p) {
			f.t.Fatalf("path entry %q -> %d has no matching state (%+v)", p, ino, st)
		}
	}
}

// wantPaths fails unless the inode's state has exactly paths (any order),
// or no state when paths is empty.
func (f *fixture) wantPaths(ino uint64, paths ...string) {
	f.t.Helper()
	st := f.state(ino)
	if len(paths) == 0 {
		if st != nil {
			f.t.Fatalf("inode %d: state %+v, want none", ino, st)
		}
		return
	}
	if st == nil {
		f.t.Fatalf("inode %d: no state, want paths %q", ino, paths)
	}
	got := slices.Sorted(slices.Values(st.Paths))
	want := slices.Sorted(slices.Values(paths))
	if !slices.Equal(got, want) {
		f.t.Fatalf("inode %d: paths %q, want %q", ino, got, want)
	}
}

func (f *fixture) wantDirty(ino uint64, rs ...journal.Range) {
	f.t.Helper()
	st := f.state(ino)
	if st == nil {
		f.t.Fatalf("inode %d: no state", ino)
	}
	if !slices.Equal(st.Dirty, rs) {
		f.t.Fatalf("inode %d: dirty %v, want %v", ino, st.Dirty, rs)
	}
}

func (f *fixture) deleted(p string) *Negative {
	f.t.Helper()
	n, err := f.x.Deleted(p)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) wantDeleted(p string, seq uint64) {
	f.t.Helper()
	n := f.deleted(p)
	if n == nil {
		f.t.Fatalf("%q: no negative entry, want one at seq %d", p, seq)
	}
	if n.Seq != seq || n.Epoch != 3 || !n.Time.Equal(time.Date(2024, 5, 6, 7, 8, 9, int(seq), time.UTC)) {
		t := n.Time
		f.t.Fatalf("%q: negative %+v (time %v), want seq %d epoch 3", p, n, t, seq)
	}
}

func (f *fixture) wantNotDeleted(paths ...string) {
	f.t.Helper()
	for _, p := range paths {
		if n := f.deleted(p); n != nil {
			f.t.Fatalf("%q: negative entry %+v, want none", p, n)
		}
	}
}

func TestWriteRangesCoalescePerIno(t *testing.T) {
	f := newFixture(t)
	f.write(1, "a", 0, 10)
	f.write(2, "b", 100, 1)
	f.write(1, "a", 10, 5)  // touching
	f.write(1, "a", 3, 4)   // inside
	f.write(1, "a", 40, 10) // disjoint
	f.write(2, "b", 50, 50) // touching from below
	f.write(1, "a", 12, 30) // bridges
	f.wantDirty(1, journal.Range{0, 50})
	f.wantDirty(2, journal.Range{50, 51})
	f.wantPaths(1, "a")
	f.wantPaths(2, "b")

	// Several ranges in one record.
	f.apply(journal.Record{Op: journal.OpWrite, Path: "c", Ino: 3, Ranges: []journal.Range{{20, 5}, {0, 5}, {5, 1}}})
	f.wantDirty(3, journal.Range{0, 6}, journal.Range{20, 5})

	// Fallocate is folded like a write.
	f.apply(journal.Record{Op: journal.OpFallocate, Path: "c", Ino: 3, Ranges: []journal.Range{{6, 14}}})
	f.wantDirty(3, journal.Range{0, 25})
}

func TestWriteBoundsRanges(t *testing.T) {
	f := newFixture(t)
	// Batched like the flusher batches, to keep the test fast.
	const n, batch = journal.MaxRanges + 100, 128
	for start := int64(0); start < n; start += batch {
		err := f.db.Update(func(txn *badger.Txn) error {
			for i := start; i < min(start+batch, n); i++ {
				f.seq++
				r := journal.Record{Seq: f.seq, Op: journal.OpWrite, Path: "big", Ino: 1, Ranges: []journal.Range{{i * 10, 1}}}
				if err := f.x.Apply(txn, journal.Entry{Record: &r}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	f.check()
	st := f.state(1)
	if len(st.Dirty) > journal.MaxRanges {
		t.Fatalf("%d ranges kept, max %d", len(st.Dirty), journal.MaxRanges)
	}
	if st.Dirty[0][0] != 0 || st.Dirty[len(st.Dirty)-1].End() != (n-1)*10+1 {
		t.Fatalf("ranges do not cover the writes: %v ... %v", st.Dirty[0], st.Dirty[len(st.Dirty)-1])
	}
}

func TestWriteUnderSecondName(t *testing.T) {
	f := newFixture(t)
	f.write(1, "a", 0, 1)
	f.write(1, "b", 1, 1) // the same inode written through another name
	f.wantPaths(1, "a", "b")
	f.wantDirty(1, journal.Range{0, 2})
}

func TestRenameFileKeepsDirtyState(t *testing.T) {
	f := newFixture(t)
	f.write(1, "dir/a", 0, 10)
	f.write(2, "dir/other", 0, 1)
	s := f.rename("dir/a", "dir2/b", 0)
	f.wantPaths(1, "dir2/b")
	f.wantDirty(1, journal.Range{0, 10})
	f.wantPaths(2, "dir/other")
	f.wantDeleted("dir/a", s)
	f.wantNotDeleted("dir2/b")

	// Later writes land on the same state under the new name.
	f.write(1, "dir2/b", 10, 10)
	f.wantPaths(1, "dir2/b")
	f.wantDirty(1, journal.Range{0, 20})

	// A rename of a clean file leaves no state but a negative entry.
	s = f.rename("clean", "clean2", 0)
	f.wantDeleted("clean", s)
	if len(f.states()) != 2 {
		t.Fatalf("states %v", f.states())
	}
}

func TestRenameDirectoryMovesChildren(t *testing.T) {
	f := newFixture(t)
	f.write(1, "a/x", 0, 1)
	f.write(2, "a/sub/y", 0, 1)
	f.write(3, "a/sub/deeper/z", 0, 1)
	f.write(4, "ab/x", 0, 1)  // sibling sharing the prefix "a"
	f.write(5, "a.txt", 0, 1) // '.' sorts before '/'
	f.write(6, "a0", 0, 1)    // '0' sorts after '/'
	f.write(7, "b/a/x", 0, 1) // "a" elsewhere
	s := f.rename("a", "c/d", 0)
	f.wantPaths(1, "c/d/x")
	f.wantPaths(2, "c/d/sub/y")
	f.wantPaths(3, "c/d/sub/deeper/z")
	f.wantPaths(4, "ab/x")
	f.wantPaths(5, "a.txt")
	f.wantPaths(6, "a0")
	f.wantPaths(7, "b/a/x")
	f.wantDeleted("a", s)
	f.wantNotDeleted("c/d", "ab", "ab/x")

	// Rename a nested directory.
	f.rename("c/d/sub", "sub", 0)
	f.wantPaths(2, "sub/y")
	f.wantPaths(3, "sub/deeper/z")
	f.wantPaths(1, "c/d/x")
}

func TestRenameDirectoryWithHardlinks(t *testing.T) {
	f := newFixture(t)
	f.write(1, "a/x", 0, 1)
	f.link(1, "a/x", "a/y")
	f.link(1, "a/x", "out")
	f.rename("a", "b", 0)
	f.wantPaths(1, "b/x", "b/y", "out")
}

func TestRenameExchange(t *testing.T) {
	f := newFixture(t)
	f.write(1, "x", 0, 1)
	f.write(2, "y", 5, 1)
	f.rename("x", "y", RenameExchange)
	f.wantPaths(1, "y")
	f.wantPaths(2, "x")
	f.wantDirty(1, journal.Range{0, 1})
	f.wantDirty(2, journal.Range{5, 1})
	// Both names still exist: no negative entries.
	f.wantNotDeleted("x", "y")

	// Directories with children, one side partly clean.
	f.write(3, "d1/a", 0, 1)
	f.write(4, "d1/sub/b", 0, 1)
	f.write(5, "d2/c", 0, 1)
	f.write(6, "d10/e", 0, 1) // shares the prefix "d1"
	f.rename("d1", "d2", RenameExchange|1 /* other flag bits are ignored */)
	f.wantPaths(3, "d2/a")
	f.wantPaths(4, "d2/sub/b")
	f.wantPaths(5, "d1/c")
	f.wantPaths(6, "d10/e")
	f.wantNotDeleted("d1", "d2")

	// Exchange with a clean name: a one-way move without a negative.
	f.rename("y", "clean", RenameExchange)
	f.wantPaths(1, "clean")
	f.wantNotDeleted("y", "clean")
}

// TestRenameExchangeHardlinks: one inode with names on both sides of an
// exchange keeps both names, each once.
func TestRenameExchangeHardlinks(t *testing.T) {
	f := newFixture(t)
	f.write(1, "d1/x", 0, 1)
	f.link(1, "d1/x", "d2/x")
	f.write(2, "d2/only", 0, 1)
	f.rename("d1", "d2", RenameExchange)
	f.wantPaths(1, "d1/x", "d2/x")
	f.wantPaths(2, "d1/only")

	// Two names of one file exchanged with each other.
	f.write(3, "p", 0, 1)
	f.link(3, "p", "q")
	f.rename("p", "q", RenameExchange)
	f.wantPaths(3, "p", "q")
}

func TestRenameOntoDirtyFile(t *testing.T) {
	f := newFixture(t)
	f.write(1, "a", 0, 10)
	f.write(2, "b", 0, 20)
	s := f.rename("a", "b", 0)
	f.wantPaths(1, "b")
	f.wantDirty(1, journal.Range{0, 10})
	f.wantPaths(2) // replaced: its only name is gone, nothing to ship
	f.wantDeleted("a", s)
	f.wantNotDeleted("b")

	// A replaced file with another name keeps that one.
	f.write(3, "c", 0, 1)
	f.write(4, "d", 0, 1)
	f.link(4, "d", "d2")
	f.rename("c", "d", 0)
	f.wantPaths(3, "d")
	f.wantPaths(4, "d2")

	// A clean file renamed onto a dirty one: the dirty one loses the name.
	f.write(5, "e", 0, 1)
	f.rename("clean", "e", 0)
	f.wantPaths(5)
}

func TestRenameOntoNegative(t *testing.T) {
	f := newFixture(t)
	f.write(1, "a", 0, 1)
	f.op(journal.OpUnlink, "b")
	if f.deleted("b") == nil {
		t.Fatal("unlink left no negative entry")
	}
	f.rename("a", "b", 0)
	f.wantNotDeleted("b")
	f.wantPaths(1, "b")
}

// TestRenameToItself: rename(2) of a name onto itself does nothing; the
// file is neither deleted nor forgotten.
func TestRenameToItself(t *testing.T) {
	f := newFixture(t)
	f.write(1, "a", 0, 10)
	f.rename("a", "a", 0)
	f.wantPaths(1, "a")
	f.wantDirty(1, journal.Range{0, 10})
	f.wantNotDeleted("a")

	f.write(2, "d/x", 0, 1)
	f.rename("d", "d", 0)
	f.wantPaths(2, "d/x")
	f.wantNotDeleted("d")

	f.rename("a", "a", RenameExchange)
	f.wantPaths(1, "a")
}

func TestHardlink(t *testing.T) {
	f := newFixture(t)
	f.op(journal.OpUnlink, "b") // an old negative at the link's name
	f.write(1, "a", 0, 10)
	f.link(1, "a", "b")
	f.wantPaths(1, "a", "b")
	f.wantNotDeleted("b")
	f.link(1, "a", "b") // replayed: no duplicate
	f.wantPaths(1, "a", "b")

	s := f.op(journal.OpUnlink, "a")
	f.wantPaths(1, "b")
	f.wantDirty(1, journal.Range{0, 10})
	f.wantDeleted("a", s)

	s = f.op(journal.OpUnlink, "b")
	f.wantPaths(1)
	f.wantDeleted("b", s)
	if len(f.pathIndex()) != 0 {
		t.Fatalf("path entries left: %v", f.pathIndex())
	}
}

func TestLinkOfCleanFile(t *testing.T) {
	f := newFixture(t)
	f.op(journal.OpUnlink, "n")
	f.link(9, "clean", "n")
	f.wantPaths(9)
	f.wantNotDeleted("n")
	// A later write through either name makes it dirty under that name.
	f.write(9, "n", 0, 1)
	f.wantPaths(9, "n")
}

func TestUnlinkAndRmdirNegatives(t *testing.T) {
	f := newFixture(t)
	if f.deleted("nothing") != nil {
		t.Fatal("negative for a path never deleted")
	}
	f.write(1, "d/f", 0, 1)
	s1 := f.op(journal.OpUnlink, "d/f")
	s2 := f.op(journal.OpRmdir, "d")
	f.wantPaths(1)
	f.wantDeleted("d/f", s1)
	f.wantDeleted("d", s2)

	// A second deletion at the same name updates the entry.
	f.op(journal.OpCreate, "d")
	s3 := f.op(journal.OpUnlink, "d")
	f.wantDeleted("d", s3)

	// Each kind of creation removes the negative entry at its path.
	for _, op := range []journal.Op{journal.OpCreate, journal.OpMkdir, journal.OpMknod, journal.OpSymlink} {
		p := "p-" + string(op)
		f.op(journal.OpUnlink, p)
		if f.deleted(p) == nil {
			t.Fatalf("%s: no negative after unlink", op)
		}
		f.op(op, p)
		f.wantNotDeleted(p)
	}
	// Creating elsewhere does not touch it.
	f.op(journal.OpCreate, "d/f2")
	f.wantDeleted("d/f", s1)
}

func TestUnlinkCleanAndUnknownOps(t *testing.T) {
	f := newFixture(t)
	f.write(1, "a", 0, 1)
	f.op(journal.OpUnlink, "b") // clean file
	f.wantPaths(1, "a")
	for _, op := range []journal.Op{journal.OpSetattr, journal.OpSetxattr, journal.OpRemovexattr} {
		f.op(op, "a")
	}
	f.wantPaths(1, "a")
	f.wantDirty(1, journal.Range{0, 1})
	f.wantNotDeleted("a")
	// A resync subsumes the dirty state at its path: shipped whole.
	f.op(journal.OpResync, "a")
	f.wantPaths(1)
	f.wantNotDeleted("a")
}

// TestResyncDropsStalePaths is the case a crash test found: a rename whose
// record was lost in a crash becomes resync records of both paths; the
// index must not keep the old name, or recovery would send a later
// whole-file record to where the file no longer is.
func TestResyncDropsStalePaths(t *testing.T) {
	f := newFixture(t)
	f.write(1, "d/old", 0, 10)
	f.write(2, "d/sub/x", 0, 1)
	// The rename old -> new happened, but only its intent survived.
	f.op(journal.OpResync, "d/old")
	f.op(journal.OpResync, "d/new")
	f.wantPaths(1)
	// A later session on the file names its real path.
	f.apply(journal.Record{Op: journal.OpWrite, Path: "d/new", Ino: 1, Ranges: []journal.Range{{5, 1}}, Open: true})
	f.wantPaths(1, "d/new")
	got := f.sessions()
	if len(got) != 1 || got[0].Path != "d/new" || !got[0].Whole {
		t.Fatalf("open sessions after resync: %+v", got)
	}
	// A resync of a directory subsumes everything below it.
	f.op(journal.OpResync, "d")
	f.wantPaths(1)
	f.wantPaths(2)
}

func TestTruncateClipsRanges(t *testing.T) {
	f := newFixture(t)
	f.write(1, "a", 0, 10)
	f.write(1, "a", 20, 10)
	f.write(1, "a", 40, 10)
	size := func(n uint64) *uint64 { return &n }
	f.apply(journal.Record{Op: journal.OpTruncate, Path: "a", Ino: 1, Size: size(25)})
	f.wantDirty(1, journal.Range{0, 10}, journal.Range{20, 5})
	f.apply(journal.Record{Op: journal.OpTruncate, Path: "a", Ino: 1, Size: size(1 << 40)})
	f.wantDirty(1, journal.Range{0, 10}, journal.Range{20, 5})
	f.apply(journal.Record{Op: journal.OpTruncate, Path: "a", Ino: 1}) // no size: ignored
	f.wantDirty(1, journal.Range{0, 10}, journal.Range{20, 5})
	f.apply(journal.Record{Op: journal.OpTruncate, Path: "a", Ino: 1, Size: size(0)})
	f.wantDirty(1)
	f.wantPaths(1, "a") // still dirty in metadata terms: the state stays
	// Truncating a clean file creates no state.
	f.apply(journal.Record{Op: journal.OpTruncate, Path: "z", Ino: 2, Size: size(0)})
	f.wantPaths(2)
}

func (f *fixture) sessions() []journal.Record {
	f.t.Helper()
	var out []journal.Record
	err := f.db.View(func(txn *badger.Txn) error {
		var err error
		out, err = f.x.OpenSessions(txn)
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	slices.SortFunc(out, func(a, b journal.Record) int { return cmp.Compare(a.Ino, b.Ino) })
	return out
}

func (f *fixture) wantSessions(inos ...uint64) {
	f.t.Helper()
	var got []uint64
	for _, r := range f.sessions() {
		if r.Op != journal.OpWrite || !r.Whole || r.Open || len(r.Ranges) != 0 {
			f.t.Fatalf("session record %s", r.String())
		}
		st := f.state(r.Ino)
		if st == nil || r.Path != st.Paths[0] {
			f.t.Fatalf("session record %s does not name the file's path (%+v)", r.String(), st)
		}
		got = append(got, r.Ino)
	}
	if !slices.Equal(got, inos) {
		f.t.Fatalf("open sessions %v, want %v", got, inos)
	}
}

func TestSessions(t *testing.T) {
	f := newFixture(t)
	f.wantSessions()
	open := func(ino uint64, p string) uint64 {
		return f.apply(journal.Record{Op: journal.OpWrite, Path: p, Ino: ino, Ranges: []journal.Range{{0, 4}}, Open: true})
	}
	s1 := open(1, "a")
	s2 := open(2, "b")
	s3 := open(3, "c")
	f.write(4, "d", 0, 1) // a write that opens no session
	f.wantSessions(1, 2, 3)
	if st := f.state(1); st.OpenSeq != s1 {
		t.Fatalf("OpenSeq = %d, want %d", st.OpenSeq, s1)
	}

	// A closing write record (Open false) ends the session.
	f.apply(journal.Record{Op: journal.OpWrite, Path: "a", Ino: 1, Ranges: []journal.Range{{100, 4}}})
	f.wantSessions(2, 3)
	f.wantDirty(1, journal.Range{0, 4}, journal.Range{100, 4})

	// A close entry ends it when ino and openSeq match.
	f.entry(journal.Entry{Closed: 2, OpenSeq: s2 + 100})
	f.entry(journal.Entry{Closed: 99, OpenSeq: s2})
	f.wantSessions(2, 3)
	f.entry(journal.Entry{Closed: 2, OpenSeq: s2})
	f.wantSessions(3)
	f.entry(journal.Entry{Closed: 2, OpenSeq: s2}) // replayed: harmless
	f.wantSessions(3)
	f.wantDirty(2, journal.Range{0, 4})

	// A new session replaces the old one; a stale close leaves it open.
	s3b := open(3, "c")
	f.entry(journal.Entry{Closed: 3, OpenSeq: s3})
	f.wantSessions(3)
	if st := f.state(3); st.OpenSeq != s3b {
		t.Fatalf("OpenSeq = %d, want %d", st.OpenSeq, s3b)
	}

	// Fallocate does not end a session.
	f.apply(journal.Record{Op: journal.OpFallocate, Path: "c", Ino: 3, Ranges: []journal.Range{{50, 1}}})
	f.wantSessions(3)

	// A renamed file's session names its new path.
	f.rename("c", "c2", 0)
	if s := f.sessions(); s[0].Path != "c2" {
		t.Fatalf("session path %q", s[0].Path)
	}

	// A whole-file write (what recovery appends) ends it and marks Whole.
	f.apply(journal.Record{Op: journal.OpWrite, Path: "c2", Ino: 3, Whole: true})
	f.wantSessions()
	if st := f.state(3); !st.Whole || st.OpenSeq != 0 {
		t.Fatalf("state after whole write %+v", st)
	}
	// Whole stays set through later ranged writes.
	f.write(3, "c2", 1000, 1)
	if st := f.state(3); !st.Whole {
		t.Fatalf("Whole was cleared: %+v", st)
	}

	// An unlinked file has no session to recover.
	open(5, "e")
	f.wantSessions(5)
	f.op(journal.OpUnlink, "e")
	f.wantSessions()
	// Its close entry arrives later and is ignored.
	f.entry(journal.Entry{Closed: 5, OpenSeq: f.seq - 1})
}

// TestApplyIsDeterministic: folding the same entries into two fresh
// indexes gives the same keys and values.
func TestApplyIsDeterministic(t *testing.T) {
	run := func() map[string]string {
		f := newFixture(t)
		f.write(1, "d1/x", 0, 1)
		f.link(1, "d1/x", "d2/x")
		f.write(2, "d2/y", 5, 5)
		f.write(3, "d1/z", 0, 3)
		f.rename("d1", "d2", RenameExchange)
		f.rename("d2", "d3", 0)
		f.op(journal.OpUnlink, "d1/y")
		out := map[string]string{}
		err := f.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.DefaultIteratorOptions)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				out[string(it.Item().KeyCopy(nil))] = string(v)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a := run()
	for i := 0; i < 5; i++ {
		if b := run(); !maps.Equal(a, b) {
			t.Fatalf("run %d differs:\n%v\n%v", i, a, b)
		}
	}
}

func TestTrimForgetsStateOnlyOnceAcknowledged(t *testing.T) {
	f := newFixture(t)
	f.write(1, "a", 0, 10)         // seq 1
	f.op(journal.OpUnlink, "gone") // seq 2
	s3 := f.write(2, "b", 0, 10)   // seq 3
	f.rename("a", "c", 0)          // seq 4: file 1 now at c, changed at 4
	trim := func(upTo uint64) [][]byte {
		t.Helper()
		var keys [][]byte
		if err := f.db.View(func(txn *badger.Txn) error {
			var err error
			keys, err = f.x.Trim(txn, upTo)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	has := func(keys [][]byte, want []byte) bool {
		return slices.ContainsFunc(keys, func(k []byte) bool { return string(k) == string(want) })
	}
	keys := trim(s3)
	if !has(keys, fileKey(2)) || !has(keys, pathKey("b")) || !has(keys, negKey("gone")) {
		t.Fatalf("trim to %d misses state it no longer needs: %q", s3, keys)
	}
	if has(keys, fileKey(1)) || has(keys, pathKey("c")) {
		t.Fatalf("trim to %d drops file 1, changed at seq 4: %q", s3, keys)
	}
	if keys := trim(4); !has(keys, fileKey(1)) || !has(keys, pathKey("c")) {
		t.Fatalf("trim to 4 keeps file 1: %q", keys)
	}
}
