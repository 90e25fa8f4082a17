package failover

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	gsync "github.com/georep/georep/sync"
)

// State is what a node persists about its role, under one badger key.
type State struct {
	Role string `json:"role"`
	// Epoch is the highest epoch this node knows; Primary (a node ID) is
	// that epoch's primary, "" while unknown.
	Epoch   uint64 `json:"epoch"`
	Primary string `json:"primary,omitempty"`
	// Since is when the node took its role.
	Since time.Time `json:"since"`
	// History is where this node's own journal stands while it is the
	// primary or fenced; a secondary's data is its replica's (the
	// receiver's state).
	History History `json:"history,omitempty"`
	// Failback is set by failback start, cleared by the commit.
	Failback *Failback `json:"failback,omitempty"`
	// LastFailback is the last commit this node took the role by.
	LastFailback *Committed `json:"last_failback,omitempty"`
	// Handover is a failback commit this node (the primary) began and
	// whose outcome it does not know: it stays fenced until it does.
	Handover *Handover `json:"handover,omitempty"`
	// Promoted is the token of the commit that made this node primary;
	// Aborted lists tokens it refused after their commit was given up.
	Promoted string   `json:"promoted,omitempty"`
	Aborted  []string `json:"aborted,omitempty"`
	// Conflicts are the sets of conflict copies this node made.
	Conflicts []ConflictSet `json:"conflicts,omitempty"`
}

// Failback is a failback under way on the node that is to be primary.
type Failback struct {
	Started time.Time `json:"started"`
	Primary string    `json:"primary"` // the node ID it follows meanwhile
}

// Committed describes a failback commit.
type Committed struct {
	Time   time.Time     `json:"time"`
	Epoch  uint64        `json:"epoch"`
	From   string        `json:"from"` // the primary it took over from (name)
	Freeze time.Duration `json:"freeze_ns"`
}

// Handover is a failback commit in flight on the primary handing over.
type Handover struct {
	Token   string  `json:"token"`
	To      string  `json:"to"` // node ID
	ToName  string  `json:"to_name"`
	Epoch   uint64  `json:"epoch"`
	Start   uint64  `json:"start"`
	History History `json:"history"`
}

// ConflictSet is one reconciliation's conflict copies.
type ConflictSet struct {
	Epoch uint64    `json:"epoch"`
	Dir   string    `json:"dir"` // in the backing dir
	Time  time.Time `json:"time"`
	// Fork is the last seq this node shared with the primary it joined
	// (Primary, a name) at epoch Joined.
	Fork    uint64   `json:"fork"`
	Primary string   `json:"primary"`
	Joined  uint64   `json:"joined_epoch"`
	Count   int      `json:"count"`
	Paths   []string `json:"paths,omitempty"` // the first maxConflictPaths
}

// maxConflictPaths bounds the paths a conflict set lists in the state,
// maxConflictSets the sets it lists (the copies stay on disk either way).
const (
	maxConflictPaths = 200
	maxConflictSets  = 100
)

// maxAborted bounds the aborted tokens kept.
const maxAborted = 64

var keyState = []byte("fo/state")

// loadState reads the state; ok is false when none is stored yet.
func loadState(db *badger.DB) (st State, ok bool, err error) {
	err = db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(keyState)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		return it.Value(func(v []byte) error { return json.Unmarshal(v, &st) })
	})
	if err != nil {
		return State{}, false, fmt.Errorf("read role state: %w", err)
	}
	return st, ok, nil
}

// put stores st in txn.
func (st *State) put(txn *badger.Txn) error {
	js, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return txn.Set(keyState, js)
}

// clone copies st deeply enough that changes to the copy's slices and
// pointers do not reach st.
func (st State) clone() State {
	c := st
	c.History = append(History(nil), st.History...)
	c.Aborted = append([]string(nil), st.Aborted...)
	c.Conflicts = append([]ConflictSet(nil), st.Conflicts...)
	return c
}

func validRole(r string) bool {
	return r == gsync.RolePrimary || r == gsync.RoleSecondary || r == gsync.RoleFenced
}
