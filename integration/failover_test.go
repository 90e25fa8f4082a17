package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Failover and failback end to end (SPEC §4.15–17), real daemons on
// 127.0.0.1.

// pair is a primary a and a secondary b; a reaches b through a proxy the
// test can cut, so a can take writes b never gets.
type pair struct {
	a, b  *daemon
	proxy *switchProxy
	names map[*daemon]string
}

func newPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{}
	c := newClusterVia(t, 1, func(i int, addr string) string {
		p.proxy = newSwitchProxy(t, addr)
		return p.proxy.addr()
	})
	p.a, p.b = c.primary, c.second[0]
	p.names = map[*daemon]string{p.a: "a", p.b: "b"}
	return p
}

// TestFailoverKilledPrimaryAndFailback: the primary is killed with
// SIGKILL holding writes its secondary never got; the secondary is
// promoted and written to; the old primary comes back fenced, its
// divergent writes become conflict copies, and failback makes it primary
// again with every write of both sides present.
func TestFailoverKilledPrimaryAndFailback(t *testing.T) {
	p := newPair(t)
	l := newWriteLedger()
	for i := 0; i < 20; i++ {
		l.mustWrite(t, p.a, "a", fmt.Sprintf("before/%02d", i), bytes.Repeat([]byte{byte(i)}, 1000+i))
	}
	l.mustWrite(t, p.a, "a", "shared/f0", []byte("f0 from a, replicated"))
	l.mustWrite(t, p.a, "a", "shared/f1", []byte("f1 from a, replicated"))
	syncWaitOn(t, p.a)

	// Partition, then writes only a has: divergent once b is promoted.
	p.proxy.cut()
	for i := 0; i < 10; i++ {
		l.mustWrite(t, p.a, "a", fmt.Sprintf("divergent/%02d", i), []byte(fmt.Sprintf("a wrote %d alone", i)))
	}
	l.mustWrite(t, p.a, "a", "shared/f0", []byte("f0 changed on a alone"))
	p.a.kill()

	r := georep(t, "failover", "start", "--state", p.b.state)
	if r.code != 0 {
		t.Fatalf("failover start: exit %d: %s%s\n%s", r.code, r.stdout, r.stderr, tail(p.b.log.String(), 30))
	}
	t.Logf("failover start:\n%s", r.stdout)
	waitRole(t, p.b, "primary", 2, 5*time.Second)
	for i := 0; i < 10; i++ {
		l.mustWrite(t, p.b, "b", fmt.Sprintf("after/%02d", i), []byte(fmt.Sprintf("b wrote %d as primary", i)))
	}
	l.mustWrite(t, p.b, "b", "shared/f1", []byte("f1 changed on b as primary"))

	// The old primary comes back: it learns of epoch 2 and is fenced,
	// then joins b's history.
	p.proxy.heal()
	p.a.restart()
	waitRole(t, p.a, "secondary", 2, 20*time.Second)
	if !erofs(p.a) {
		t.Error("the old primary's mount accepts writes after the failover")
	}
	st := statusOf(t, p.a)
	if cs, _ := st["conflicts"].([]any); len(cs) != 1 {
		t.Errorf("status of the old primary lists conflicts %v, want one set", st["conflicts"])
	}
	got := conflictCopies(t, p.a.backing)
	for i := 0; i < 10; i++ {
		if !slices.Contains(got, fmt.Sprintf("divergent/%02d", i)) {
			t.Errorf("divergent/%02d has no conflict copy (copies: %v)", i, got)
		}
	}
	if !slices.Contains(got, "shared/f0") {
		t.Errorf("the divergent change of shared/f0 has no conflict copy (copies: %v)", got)
	}

	freeze := failbackTo(t, p.a)
	t.Logf("failback commit froze b for %s", freeze)
	waitRole(t, p.a, "primary", 3, 5*time.Second)
	waitRole(t, p.b, "secondary", 3, 5*time.Second)
	if erofs(p.a) {
		t.Error("a's mount is read-only after the failback")
	}
	if !erofs(p.b) {
		t.Error("b's mount is writable after the failback")
	}
	l.mustWrite(t, p.a, "a", "final", []byte("a is primary again"))
	syncWaitOn(t, p.a)
	verifyOn(t, p.a)
	sameTrees(t, p.a, p.b)
	live, kept := l.check(t, p.a.backing, p.a.backing)
	t.Logf("writeLedger: %d writes live, %d in conflict copies", live, kept)
	for i := 0; i < 10; i++ {
		if w := l.where(fmt.Sprintf("divergent/%02d", i), p.a.backing, p.a.backing); w != "conflict" {
			t.Errorf("divergent/%02d is %q, want only in a conflict copy", i, w)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(p.a.mount, "shared/f1")); !strings.Contains(string(b), "on b as primary") {
		t.Errorf("shared/f1 is %q, want b's change", b)
	}
	if b, _ := os.ReadFile(filepath.Join(p.a.mount, "shared/f0")); string(b) != "f0 from a, replicated" {
		t.Errorf("shared/f0 is %q, want the replicated version (a's divergent one is a conflict copy)", b)
	}
}
