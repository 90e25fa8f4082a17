// Package sync will own georep's wire protocol, the shipping side on the
// primary and the applying side on secondaries (SPEC §4.7–14). It is
// built by the replication issue ("2 of 4"); nothing is implemented here
// yet, and nothing imports it.
package sync
