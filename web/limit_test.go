package web

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// TestLimiterBacksOff: three free failures, then lockouts doubling from
// 1 s to the cap; a lockout refuses every attempt of that client only;
// success or an hour of quiet forgets.
func TestLimiterBacksOff(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := newLimiter(clk.now)
	const a, b = "192.0.2.1", "192.0.2.2"
	for i := 0; i < freeLimit; i++ {
		if ok, _ := l.allow(a); !ok {
			t.Fatalf("attempt %d refused", i+1)
		}
		if lock := l.failed(a); lock != 0 {
			t.Fatalf("failure %d locked out for %s", i+1, lock)
		}
	}
	want := time.Second
	for i := 0; i < 14; i++ {
		if ok, _ := l.allow(a); !ok {
			t.Fatalf("round %d: refused after the lockout ended", i)
		}
		lock := l.failed(a)
		if lock != want {
			t.Fatalf("round %d: lockout %s, want %s", i, lock, want)
		}
		if ok, wait := l.allow(a); ok || wait != want {
			t.Fatalf("round %d: during the lockout: allowed %v, wait %s", i, ok, wait)
		}
		if ok, _ := l.allow(b); !ok {
			t.Fatal("another client is locked out too")
		}
		clk.advance(lock)
		want = min(want*2, maxLockout)
	}
	if want != maxLockout {
		t.Fatalf("lockout did not reach the cap: %s", want)
	}
	l.succeeded(a)
	if lock := l.failed(a); lock != 0 {
		t.Fatalf("failure after a success locked out for %s", lock)
	}
	// An hour of quiet forgets the failures.
	for i := 0; i < freeLimit; i++ {
		l.failed(b)
	}
	clk.advance(forgetAfter + time.Second)
	if ok, _ := l.allow(b); !ok {
		t.Fatal("refused after an hour of quiet")
	}
	if lock := l.failed(b); lock != 0 {
		t.Fatalf("failures remembered after an hour: lockout %s", lock)
	}
}

// TestLimiterBounded: many clients do not grow the table without bound,
// and a locked-out client is not the one forgotten to make room.
func TestLimiterBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := newLimiter(clk.now)
	for i := 0; i <= freeLimit; i++ {
		l.failed("locked")
	}
	for i := 0; i < maxClients+100; i++ {
		clk.advance(time.Microsecond) // all within the 1 s lockout
		l.failed(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if n := len(l.clients); n > maxClients {
		t.Fatalf("%d clients kept, bound %d", n, maxClients)
	}
	if ok, _ := l.allow("locked"); ok {
		t.Fatal("the locked-out client was forgotten to make room")
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:5555":            "192.0.2.7",
		"[::ffff:192.0.2.7]:5555":   "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:80": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ff::1]:80":   "2001:db8:1:2::/64",
		"@":                         "@",
	} {
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
}
