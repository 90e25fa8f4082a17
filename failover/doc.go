// Package failover owns roles, epochs, fencing, failover and failback
// (SPEC §4.15–17).
//
// Every node persists its role (primary, secondary or fenced), the
// highest epoch it knows and that epoch's primary, and, while it is or was
// a primary, the history of epochs its data descends from: a list of
// (epoch, start seq, primary) steps, DRBD's generation identifiers made
// explicit. Seqs run on across epochs: a secondary promoted at its cursor
// c makes epoch e+1, whose records have seqs after c. Two nodes agree on
// the records up to the fork of their histories (Fork); what one holds
// past it, the other never had.
//
// The Controller is the sync engine's Roles: every handshake carries both
// sides' claims (role, epoch, primary, history, seq), and a primary that
// sees a newer epoch fences itself at once (its mount returns EROFS).
// When the current primary opens a session to a node, Join brings that
// node onto the primary's history: whatever it holds past the fork (the
// writes an old primary took after its last acknowledged batch, records a
// secondary received from a deposed primary) is copied to
// .georep/conflicts/<epoch>/ in its backing dir, and those paths are
// compared with the primary after its records are applied.
//
// Failover (Failover) promotes a secondary after asking every reachable
// peer where it stands. Failback (FailbackStart, FailbackStatus,
// FailbackCommit) makes a node primary again: it follows the current
// primary until it has caught up, then a commit freezes the current
// primary's mount, ships the last batch, and hands the role over with a
// token both sides persist, so a crash of either side at any point leaves
// one primary and loses nothing (see commit.go).
//
// Files: history.go (forks), state.go (what is persisted), controller.go
// (claims and fencing), join.go and conflicts.go (divergence), failover.go
// (promotion), failback.go and commit.go (failback), peers.go (asking
// peers), messages.go (the control messages on the wire).
package failover
