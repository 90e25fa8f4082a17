package failover

import (
	"testing"
	"time"

	gsync "github.com/georep/georep/sync"
)

func TestNewer(t *testing.T) {
	st := State{Role: gsync.RolePrimary, Epoch: 2, Primary: idB}
	for _, tc := range []struct {
		name    string
		epoch   uint64
		primary string
		want    bool
	}{
		{"higher epoch", 3, idA, true},
		{"higher epoch, primary unknown", 3, "", true},
		{"lower epoch", 1, idA, false},
		{"same epoch, same primary", 2, idB, false},
		{"same epoch, primary unknown", 2, "", false},
		{"same epoch, smaller ID wins", 2, idA, true},
		{"same epoch, larger ID loses", 2, idC, false},
	} {
		if got := newer(&st, tc.epoch, tc.primary); got != tc.want {
			t.Errorf("%s: newer = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A node that does not know its epoch's primary adopts one.
	unknown := State{Role: gsync.RoleSecondary, Epoch: 2}
	if !newer(&unknown, 2, idC) {
		t.Error("a secondary that knows no primary did not adopt one at its epoch")
	}
}

func TestEstimate(t *testing.T) {
	c := &Controller{}
	if e := c.estimate(1000); e != -1 {
		t.Errorf("first sample: estimate %v, want unknown", e)
	}
	c.progress[0].t = time.Now().Add(-10 * time.Second) // 100 units/s since
	if e := c.estimate(0); e != 0 {
		t.Errorf("nothing pending: %v, want 0", e)
	}
	c.progress = []sample{{time.Now().Add(-10 * time.Second), 2000}}
	if e := c.estimate(1000); e < 9 || e > 11 {
		t.Errorf("estimate %v, want about 10s (1000 left at 100/s)", e)
	}
	c.progress = []sample{{time.Now().Add(-10 * time.Second), 500}}
	if e := c.estimate(1000); e != -1 {
		t.Errorf("growing backlog: estimate %v, want unknown", e)
	}
}
