// Package web owns the daemon's operator surface over HTTP (georep daemon
// --http): the server-rendered status page with its takeover and
// failback-commit forms, /metrics in the Prometheus text format, and
// /healthz. It also owns the takeover password: how it is hashed, stored
// in the state dir and checked, and how guessing it is rate-limited.
//
// Every GET reports; only the two form POSTs change anything, and each
// needs the password (there is no session cookie), a same-origin request
// (net/http's CrossOriginProtection) and the epoch the page was rendered
// at, so a stale or replayed form does nothing.
package web
