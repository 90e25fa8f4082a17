// Package integration holds georep's end-to-end tests: they build the real
// binary, start real daemons with real FUSE mounts, and kill them with
// SIGKILL. They need root and /dev/fuse.
package integration
