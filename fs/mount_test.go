package fs

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/georep/georep/journal"
	"github.com/georep/georep/node"
)

// testMount is a real journaled FUSE mount for a test.
type testMount struct {
	mnt, backing string
	m            *Mount
	n            *node.Node
}

func requireFuse(t testing.TB) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("mount tests need root (DirectMount)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
}

func newTestMount(t testing.TB) *testMount {
	t.Helper()
	requireFuse(t)
	dir := t.TempDir()
	tm := &testMount{mnt: filepath.Join(dir, "mnt"), backing: filepath.Join(dir, "backing")}
	for _, d := range []string{tm.mnt, tm.backing} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(dir, "state")
	if _, err := node.Init(state, "test", ""); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	n, err := node.Open(state, log)
	if err != nil {
		t.Fatal(err)
	}
	tm.n = n
	m, err := New(context.Background(), Options{Backing: tm.backing, Mountpoint: tm.mnt, Journal: n.Journal, Logger: log,
		BeforeMount: func(root string) error { return n.ClaimBacking(root, HiddenDir) }})
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	tm.m = m
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		n.Close()
		assertNoMount(t, tm.mnt)
	})
	return tm
}

// assertNoMount fails if dir is still in the mount table.
func assertNoMount(t testing.TB, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			t.Errorf("stale mount left at %s", dir)
		}
	}
}

func (tm *testMount) path(p string) string { return filepath.Join(tm.mnt, p) }

// records returns the journal records after seq since.
func (tm *testMount) records(t testing.TB, since uint64) []journal.Record {
	t.Helper()
	if err := tm.m.Volume.Cut(); err != nil {
		t.Fatal(err)
	}
	j := tm.n.Journal
	if err := j.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var out []journal.Record
	if err := j.Since(context.Background(), since, func(r *journal.Record) bool { out = append(out, *r); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}
