// Package failover will own roles, epochs, fencing, failover and failback
// (SPEC §4.15–17). It is built by the failover issue ("3 of 4"); until
// then a node's role is its daemon's --primary flag and its epoch is the
// journal's. Nothing is implemented here yet, and nothing imports it.
package failover
