package sync

import (
	gosync "sync"
	"sync/atomic"
)

// Counters are the engine's running totals since the daemon started, for
// monitoring (/metrics). They only go up; a shipper that is replaced (the
// node stopped and started shipping) keeps adding to its peer's totals.
type Counters struct {
	// Peers: what this node shipped to each peer while primary, by name.
	Peers map[string]PeerCounters
	// BatchesApplied and RecordsApplied count what this node applied as
	// a secondary; ApplyErrors the replication sessions it served that
	// ended with an error.
	BatchesApplied uint64
	RecordsApplied uint64
	ApplyErrors    uint64
}

// PeerCounters are one peer's shipping totals.
type PeerCounters struct {
	BatchesShipped uint64
	RecordsShipped uint64
	BytesShipped   uint64 // file data, as read from the backing dir
	// Errors counts replication sessions with the peer that ended with an
	// error (connection lost, peer refused, apply failed).
	Errors uint64
}

// counters is the engine's live Counters.
type counters struct {
	mu    gosync.Mutex
	peers map[string]*peerCounters

	batchesApplied atomic.Uint64
	recordsApplied atomic.Uint64
	applyErrors    atomic.Uint64
}

type peerCounters struct {
	batches, records, bytes, errors atomic.Uint64
}

// peer returns the live counters of the peer named name.
func (c *counters) peer(name string) *peerCounters {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peers == nil {
		c.peers = map[string]*peerCounters{}
	}
	pc := c.peers[name]
	if pc == nil {
		pc = new(peerCounters)
		c.peers[name] = pc
	}
	return pc
}

func (c *counters) snapshot() Counters {
	out := Counters{Peers: map[string]PeerCounters{},
		BatchesApplied: c.batchesApplied.Load(), RecordsApplied: c.recordsApplied.Load(), ApplyErrors: c.applyErrors.Load()}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, pc := range c.peers {
		out.Peers[name] = PeerCounters{BatchesShipped: pc.batches.Load(), RecordsShipped: pc.records.Load(),
			BytesShipped: pc.bytes.Load(), Errors: pc.errors.Load()}
	}
	return out
}

// Counters returns the engine's totals since it started.
func (e *Engine) Counters() Counters { return e.counts.snapshot() }
