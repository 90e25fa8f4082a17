package web

import (
	gosync "sync"
	"time"
)

// Guessing limits: a client may get the password wrong freeLimit times in
// a row; after that each further failure locks it out for twice as long
// as the one before (1 s, 2 s, 4 s … up to maxLockout). A lockout refuses
// every attempt of that client, the right password included, without
// checking it. A client that makes no attempt for forgetAfter starts
// afresh.
const (
	freeLimit   = 3
	baseLockout = time.Second
	maxLockout  = 15 * time.Minute
	forgetAfter = time.Hour
	// maxClients bounds the table; beyond it the longest-idle client is
	// forgotten.
	maxClients = 10_000
)

// limiter rate-limits password attempts per client address.
type limiter struct {
	now func() time.Time

	mu      gosync.Mutex
	clients map[string]*client
}

type client struct {
	failures    int
	lockedUntil time.Time
	last        time.Time
}

func newLimiter(now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	return &limiter{now: now, clients: map[string]*client{}}
}

// allow says whether addr may try a password now; if not, how long it
// has to wait.
func (l *limiter) allow(addr string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c := l.clients[addr]
	if c == nil {
		return true, 0
	}
	if now.Sub(c.last) > forgetAfter && !now.Before(c.lockedUntil) {
		delete(l.clients, addr)
		return true, 0
	}
	if now.Before(c.lockedUntil) {
		return false, c.lockedUntil.Sub(now)
	}
	return true, 0
}

// failed records a wrong password from addr and returns the lockout it
// starts (0: none yet).
func (l *limiter) failed(addr string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c := l.clients[addr]
	if c == nil {
		if len(l.clients) >= maxClients {
			l.evictLocked()
		}
		c = &client{}
		l.clients[addr] = c
	}
	c.failures++
	c.last = now
	if c.failures <= freeLimit {
		return 0
	}
	lock := maxLockout
	if n := c.failures - freeLimit - 1; n < 20 {
		lock = min(baseLockout<<n, maxLockout)
	}
	c.lockedUntil = now.Add(lock)
	return lock
}

// succeeded forgets addr's failures.
func (l *limiter) succeeded(addr string) {
	l.mu.Lock()
	delete(l.clients, addr)
	l.mu.Unlock()
}

// evictLocked forgets the client idle longest (never one locked out now,
// unless all are).
func (l *limiter) evictLocked() {
	now := l.now()
	var victim string
	var oldest time.Time
	for addr, c := range l.clients {
		if now.Before(c.lockedUntil) {
			continue
		}
		if victim == "" || c.last.Before(oldest) {
			victim, oldest = addr, c.last
		}
	}
	if victim == "" {
		for addr, c := range l.clients {
			if victim == "" || c.last.Before(oldest) {
				victim, oldest = addr, c.last
			}
		}
	}
	delete(l.clients, victim)
}
