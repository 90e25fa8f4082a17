package sync

import (
	"context"

	"github.com/georep/georep/node"
)

// Roles is the failover side of every handshake (package failover
// implements it): the engine tells it every peer's claim, asks it whether
// a primary may replicate to this node, and lets it bring the replica onto
// a new primary's history before a session starts.
type Roles interface {
	// Claim is what this node says of itself now.
	Claim() Claim
	// Observe learns from a peer's claim, in every handshake and both
	// ways; it fences this node when the claim shows a newer primary.
	Observe(peer node.Peer, c *Claim)
	// Accepts reports why a replication session from peer, which claims
	// c, may not run (nil: this node follows that primary now).
	Accepts(peer node.Peer, c *Claim) error
	// Join runs before a replication session from an accepted primary,
	// with the receiver's session held: it brings the replica onto the
	// primary's history (Receiver.Rebase), preserving what this node
	// holds that the history does not.
	Join(ctx context.Context, peer node.Peer, c *Claim) error
	// IsPrimary reports whether this node is the primary now.
	IsPrimary() bool
}
