// Package index owns georep's per-file replication state: which files are
// dirty and in which byte ranges, under which paths they live now (a file's
// identity is its backing inode, so it survives renames and hardlinks), and
// the negative entries that remember deleted names.
//
// The index is the deterministic fold of the journal: Apply is called by the
// journal's flusher inside the same badger transaction that stores each
// record, so after any crash the two agree. Keys (in the shared badger DB):
//
//	f/<ino>   FileState of a dirty file
//	p/<path>  ino of the dirty file at path (for directory renames)
//	n/<path>  Negative: the path was deleted (or renamed away)
package index

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/georep/georep/journal"
)

// FileState is the replication state of one dirty file.
type FileState struct {
	Ino   uint64          `json:"ino"`
	Paths []string        `json:"paths"`
	Dirty []journal.Range `json:"dirty,omitempty"`
	// Whole: ship the whole file, the ranges are not known.
	Whole bool `json:"whole,omitempty"`
	// OpenSeq is the seq of the record that opened the file's current write
	// session, 0 when no session is open.
	OpenSeq uint64 `json:"open_seq,omitempty"`
	// Seq is the last record that changed this state; Trim forgets the
	// state once every secondary has that record.
	Seq uint64 `json:"seq,omitempty"`
}

// Negative is a deleted name.
type Negative struct {
	Seq   uint64    `json:"seq"`
	Epoch uint64    `json:"epoch"`
	Time  time.Time `json:"time"`
}

var (
	prefixFile = []byte("f/")
	prefixPath = []byte("p/")
	prefixNeg  = []byte("n/")
)

func fileKey(ino uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), prefixFile...), ino)
}
func pathKey(p string) []byte { return append(append([]byte(nil), prefixPath...), p...) }
func negKey(p string) []byte  { return append(append([]byte(nil), prefixNeg...), p...) }

// Index reads and folds the per-file state.
type Index struct {
	db *badger.DB
}

// New returns the index stored in db.
func New(db *badger.DB) *Index { return &Index{db: db} }

// Apply folds one journal entry into the index. It is the journal's
// Persister.
func (x *Index) Apply(txn *badger.Txn, e journal.Entry) error {
	if e.Record == nil {
		return x.closeSession(txn, e.Closed, e.OpenSeq)
	}
	r := e.Record
	var err error
	switch r.Op {
	case journal.OpCreate, journal.OpMkdir, journal.OpMknod, journal.OpSymlink:
		err = txn.Delete(negKey(r.Path))
	case journal.OpLink:
		if err = txn.Delete(negKey(r.NewPath)); err == nil {
			err = x.addPath(txn, r.Ino, r.NewPath, r.Seq)
		}
	case journal.OpWrite, journal.OpFallocate:
		err = x.write(txn, r)
	case journal.OpTruncate:
		err = x.truncate(txn, r)
	case journal.OpUnlink, journal.OpRmdir:
		if err = x.negative(txn, r, r.Path); err == nil {
			err = x.dropPath(txn, r.Path)
		}
	case journal.OpRename:
		err = x.rename(txn, r)
	case journal.OpResync:
		err = x.resync(txn, r.Path)
	}
	if err != nil {
		return fmt.Errorf("index %s %q (seq %d): %w", r.Op, r.Path, r.Seq, err)
	}
	return nil
}

func (x *Index) get(txn *badger.Txn, ino uint64) (*FileState, error) {
	it, err := txn.Get(fileKey(ino))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st := new(FileState)
	if err := it.Value(func(v []byte) error { return json.Unmarshal(v, st) }); err != nil {
		return nil, fmt.Errorf("decode file state %d: %w", ino, err)
	}
	return st, nil
}

func (x *Index) put(txn *badger.Txn, st *FileState) error {
	if len(st.Paths) == 0 {
		// No name reaches the file any more: nothing to ship.
		return txn.Delete(fileKey(st.Ino))
	}
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return txn.Set(fileKey(st.Ino), v)
}

func (x *Index) inoAt(txn *badger.Txn, p string) (uint64, error) {
	it, err := txn.Get(pathKey(p))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	v, err := it.ValueCopy(nil)
	if err != nil || len(v) != 8 {
		return 0, fmt.Errorf("path entry %q: bad value (%v)", p, err)
	}
	return binary.BigEndian.Uint64(v), nil
}

func (x *Index) write(txn *badger.Txn, r *journal.Record) error {
	st, err := x.get(txn, r.Ino)
	if err != nil {
		return err
	}
	if st == nil {
		st = &FileState{Ino: r.Ino}
	}
	st.Dirty = journal.MergeRanges(st.Dirty, r.Ranges)
	st.Seq = r.Seq
	if r.Whole {
		st.Whole, st.OpenSeq = true, 0
	}
	if r.Op == journal.OpWrite {
		// An open record starts a write session; any other write
		// record ends it.
		st.OpenSeq = 0
		if r.Open {
			st.OpenSeq = r.Seq
		}
	}
	if !slices.Contains(st.Paths, r.Path) {
		st.Paths = append(st.Paths, r.Path)
		if err := txn.Set(pathKey(r.Path), binary.BigEndian.AppendUint64(nil, r.Ino)); err != nil {
			return err
		}
	}
	return x.put(txn, st)
}

func (x *Index) truncate(txn *badger.Txn, r *journal.Record) error {
	st, err := x.get(txn, r.Ino)
	if err != nil || st == nil || r.Size == nil {
		return err
	}
	st.Dirty = journal.ClipRanges(st.Dirty, int64(*r.Size))
	st.Seq = r.Seq
	return x.put(txn, st)
}

func (x *Index) closeSession(txn *badger.Txn, ino, openSeq uint64) error {
	st, err := x.get(txn, ino)
	if err != nil || st == nil || st.OpenSeq != openSeq {
		return err
	}
	st.OpenSeq = 0
	return x.put(txn, st)
}

func (x *Index) addPath(txn *badger.Txn, ino uint64, p string, seq uint64) error {
	st, err := x.get(txn, ino)
	if err != nil || st == nil {
		return err
	}
	if !slices.Contains(st.Paths, p) {
		st.Paths = append(st.Paths, p)
	}
	st.Seq = seq
	if err := txn.Set(pathKey(p), binary.BigEndian.AppendUint64(nil, ino)); err != nil {
		return err
	}
	return x.put(txn, st)
}

// dropPath forgets that the dirty file at p is reachable there.
func (x *Index) dropPath(txn *badger.Txn, p string) error {
	ino, err := x.inoAt(txn, p)
	if err != nil || ino == 0 {
		return err
	}
	if err := txn.Delete(pathKey(p)); err != nil {
		return err
	}
	st, err := x.get(txn, ino)
	if err != nil || st == nil {
		return err
	}
	st.Paths = slices.DeleteFunc(st.Paths, func(q string) bool { return q == p })
	return x.put(txn, st)
}

func (x *Index) negative(txn *badger.Txn, r *journal.Record, p string) error {
	v, err := json.Marshal(Negative{Seq: r.Seq, Epoch: r.Epoch, Time: r.Time})
	if err != nil {
		return err
	}
	return txn.Set(negKey(p), v)
}

// under lists the dirty paths at p or below it.
func (x *Index) under(txn *badger.Txn, p string) ([]string, error) {
	var out []string
	if ino, err := x.inoAt(txn, p); err != nil {
		return nil, err
	} else if ino != 0 {
		out = append(out, p)
	}
	prefix := pathKey(p + "/")
	if p == "" {
		prefix = pathKey("")
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		q := string(it.Item().Key()[len(prefixPath):])
		if q != p {
			out = append(out, q)
		}
	}
	return out, nil
}

// movePaths rewrites the dirty paths below from (inclusive) to live below to.
func (x *Index) movePaths(txn *badger.Txn, moves map[string]string, seq uint64) error {
	type mv struct {
		ino      uint64
		from, to string
	}
	var all []mv
	for from, to := range moves {
		ino, err := x.inoAt(txn, from)
		if err != nil {
			return err
		}
		all = append(all, mv{ino, from, to})
		if err := txn.Delete(pathKey(from)); err != nil {
			return err
		}
	}
	for _, m := range all {
		if err := txn.Set(pathKey(m.to), binary.BigEndian.AppendUint64(nil, m.ino)); err != nil {
			return err
		}
	}
	// Rewrite each file's paths once, applying every move at the same
	// time: with RENAME_EXCHANGE a file can have names on both sides
	// (hardlinks), and moving them one at a time would map a to b, then
	// both b back to a.
	done := map[uint64]bool{}
	for _, m := range all {
		if done[m.ino] {
			continue
		}
		done[m.ino] = true
		st, err := x.get(txn, m.ino)
		if err != nil {
			return err
		}
		if st == nil {
			continue
		}
		for i, q := range st.Paths {
			if to, ok := moves[q]; ok {
				st.Paths[i] = to
			}
		}
		st.Seq = seq
		if err := x.put(txn, st); err != nil {
			return err
		}
	}
	return nil
}

func rebase(q, from, to string) string { return to + strings.TrimPrefix(q, from) }

func (x *Index) rename(txn *badger.Txn, r *journal.Record) error {
	from, to := r.Path, r.NewPath
	if from == to {
		// rename(2) of a name onto itself succeeds and changes nothing.
		return nil
	}
	src, err := x.under(txn, from)
	if err != nil {
		return err
	}
	dst, err := x.under(txn, to)
	if err != nil {
		return err
	}
	moves := map[string]string{}
	for _, q := range src {
		moves[q] = rebase(q, from, to)
	}
	if r.Flags&RenameExchange != 0 {
		for _, q := range dst {
			moves[q] = rebase(q, to, from)
		}
		return x.movePaths(txn, moves, r.Seq)
	}
	// The target, if it existed, is replaced: it is gone under that name.
	for _, q := range dst {
		if err := x.dropPath(txn, q); err != nil {
			return err
		}
	}
	if err := x.movePaths(txn, moves, r.Seq); err != nil {
		return err
	}
	if err := txn.Delete(negKey(to)); err != nil {
		return err
	}
	return x.negative(txn, r, from)
}

// resync forgets the dirty state at p and below it: a resync record says
// the journal cannot vouch for that part of the tree (an operation on it,
// a rename perhaps, may or may not have happened), so it is compared and
// shipped whole, which subsumes any ranges known there, and paths the
// index holds there may be stale.
func (x *Index) resync(txn *badger.Txn, p string) error {
	paths, err := x.under(txn, p)
	if err != nil {
		return err
	}
	for _, q := range paths {
		if err := x.dropPath(txn, q); err != nil {
			return err
		}
	}
	return nil
}

// RenameExchange is the RENAME_EXCHANGE flag of renameat2(2).
const RenameExchange = 1 << 1

// OpenSessions returns a whole-file write record for every file whose write
// session was open when the daemon stopped: the journal cannot say which
// of its ranges changed. It is the journal's Recoverer.
func (x *Index) OpenSessions(txn *badger.Txn) ([]journal.Record, error) {
	var out []journal.Record
	err := x.each(txn, func(st *FileState) bool {
		if st.OpenSeq != 0 {
			// Every name of the file: any of them may be the one the
			// lost writes were made through.
			for _, p := range st.Paths {
				out = append(out, journal.Record{Op: journal.OpWrite, Path: p, Ino: st.Ino, Whole: true})
			}
		}
		return true
	})
	return out, err
}

func (x *Index) each(txn *badger.Txn, fn func(*FileState) bool) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixFile, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		st := new(FileState)
		if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, st) }); err != nil {
			return fmt.Errorf("decode file state %x: %w", it.Item().Key(), err)
		}
		if !fn(st) {
			return nil
		}
	}
	return nil
}

// Dirty lists every dirty file.
func (x *Index) Dirty() ([]FileState, error) {
	var out []FileState
	err := x.db.View(func(txn *badger.Txn) error {
		return x.each(txn, func(st *FileState) bool { out = append(out, *st); return true })
	})
	return out, err
}

// File returns the state of the dirty file ino, or nil.
func (x *Index) File(ino uint64) (*FileState, error) {
	var st *FileState
	err := x.db.View(func(txn *badger.Txn) error {
		var err error
		st, err = x.get(txn, ino)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read file state %d: %w", ino, err)
	}
	return st, nil
}

// Trim lists the keys of state that no record after upTo needs: files no
// longer in a write session and last changed at or before upTo (with
// their path entries), and negative entries as old. It is the journal's
// Trimmer.
func (x *Index) Trim(txn *badger.Txn, upTo uint64) ([][]byte, error) {
	var keys [][]byte
	var inner error
	err := x.each(txn, func(st *FileState) bool {
		if st.OpenSeq != 0 || st.Seq > upTo {
			return true
		}
		keys = append(keys, fileKey(st.Ino))
		for _, p := range st.Paths {
			// A path entry another file has taken over since stays.
			ino, err := x.inoAt(txn, p)
			if err != nil {
				inner = err
				return false
			}
			if ino == st.Ino {
				keys = append(keys, pathKey(p))
			}
		}
		return true
	})
	if err = errors.Join(err, inner); err != nil {
		return nil, err
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixNeg, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var neg Negative
		if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &neg) }); err != nil {
			return nil, fmt.Errorf("decode negative entry %q: %w", it.Item().Key(), err)
		}
		if neg.Seq <= upTo {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
	}
	return keys, nil
}

// Deleted returns the negative entry of p, if any.
func (x *Index) Deleted(p string) (*Negative, error) {
	var out *Negative
	err := x.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(negKey(p))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		out = new(Negative)
		return it.Value(func(v []byte) error { return json.Unmarshal(v, out) })
	})
	if err != nil {
		return nil, fmt.Errorf("read negative entry %q: %w", p, err)
	}
	return out, nil
}
