package sync

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/georep/georep/journal"
)

// The received log (rl/<seq> in the database) keeps the records a
// secondary applied, as the primary sent them. After a promotion it is
// the start of the new primary's history: a secondary behind the new
// primary catches up from it. It holds every record in (RLFrom, Cursor]
// of the replica state; the primary's BatchBegin.Trim says up to where
// every replica has applied, and the log is trimmed up to there.

func receivedKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(slices.Clone(prefixReceived), seq)
}

// ReceivedSince calls fn for every received record with seq > after, in
// order, until fn returns false.
func (r *Receiver) ReceivedSince(ctx context.Context, after uint64, fn func(*journal.Record) bool) error {
	return r.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixReceived, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Seek(receivedKey(after + 1)); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var rec journal.Record
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return fmt.Errorf("read received record %x: %w", it.Item().Key(), err)
			}
			if !fn(&rec) {
				return nil
			}
		}
		return nil
	})
}

// TrimReceived drops received records with seq ≤ upTo.
func (r *Receiver) TrimReceived(upTo uint64) error {
	r.mu.Lock()
	st := r.state
	r.mu.Unlock()
	if upTo <= st.RLFrom {
		return nil
	}
	upTo = min(upTo, st.Cursor)
	if upTo <= st.RLFrom {
		return nil
	}
	// From 0: records a rebase left below RLFrom go too.
	if err := r.dropReceived(0, upTo); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state.RLFrom < upTo {
		r.state.RLFrom = upTo
		return r.persistLocked()
	}
	return nil
}

// dropReceived deletes the received records with from < seq ≤ to.
func (r *Receiver) dropReceived(from, to uint64) error {
	var keys [][]byte
	err := r.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixReceived})
		defer it.Close()
		for it.Seek(receivedKey(from + 1)); it.Valid(); it.Next() {
			k := it.Item().Key()
			if binary.BigEndian.Uint64(k[len(prefixReceived):]) > to {
				break
			}
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("drop received records %d..%d: %w", from+1, to, err)
	}
	if len(keys) == 0 {
		return nil
	}
	wb := r.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return fmt.Errorf("drop received records: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("drop received records: %w", err)
	}
	return nil
}

// persistLocked writes the replica state alone (r.mu held).
func (r *Receiver) persistLocked() error {
	js, err := json.Marshal(&r.state)
	if err != nil {
		return err
	}
	return r.db.Update(func(txn *badger.Txn) error { return txn.Set(keyReplica, js) })
}

// Rebase replaces the replica state, in one transaction with extra (the
// failover side's own state): a new primary's history, or this node's own
// journal, describes the replica from now on. Received records past the
// new cursor (divergent ones) are dropped; those up to st.RLFrom are left
// for the next trim (nothing reads them). The receiver's session must be
// held (Join) or no session may run.
func (r *Receiver) Rebase(st ReplicaState, extra func(*badger.Txn) error) error {
	r.mu.Lock()
	old := r.state
	r.mu.Unlock()
	var fns []func(*badger.Txn) error
	if extra != nil {
		fns = append(fns, extra)
	}
	if err := r.commit(st, nil, fns...); err != nil {
		return fmt.Errorf("rebase replica: %w", err)
	}
	r.mu.Lock()
	r.links = nil // inodes of another primary's tree
	r.mu.Unlock()
	// A crash before they are gone leaves them past the cursor, where the
	// next batch overwrites them or the next rebase drops them.
	if old.Cursor > st.Cursor {
		return r.dropReceived(st.Cursor, math.MaxUint64)
	}
	return nil
}
