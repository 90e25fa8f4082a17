package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestScheduledSyncWithHooks: a primary on a schedule runs its pre-sync
// hook (a "database dump" into the volume) before each scheduled sync and
// ships without being asked; the secondary runs its post-apply hook; both
// hooks' output is in the log status points to.
func TestScheduledSyncWithHooks(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "applied")
	c := newClusterVia(t, 1, nil)
	// Restart both with hooks (the cluster helper starts them plain).
	c.primary.stop()
	c.second[0].stop()
	c.primary.args = append(c.primary.args, "--schedule", "@every 2s",
		"--pre-sync-hook", `date +%s%N >> "$GEOREP_MOUNT/dump.txt"`)
	c.second[0].args = append(c.second[0].args, "--post-apply-hook", "echo applied >> "+marker)
	c.second[0].start()
	c.primary.start()

	if err := os.WriteFile(filepath.Join(c.primary.mount, "data"), []byte("scheduled"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(c.second[0].mount, "dump.txt"))
		d, err2 := os.ReadFile(filepath.Join(c.second[0].mount, "data"))
		if err == nil && len(b) > 0 && err2 == nil && string(d) == "scheduled" {
			break
		}
		if time.Now().After(deadline) {
			c.dumpLogs()
			t.Fatal("the scheduled sync did not ship the hook's dump and the data")
		}
		time.Sleep(100 * time.Millisecond)
	}
	st := c.primary.status()
	hooks := st["hooks"].(map[string]any)
	logPath, _ := hooks["log"].(string)
	if b, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(b), "pre-sync") {
		t.Errorf("status points to hook log %q: %v %q", logPath, err, b)
	}
	if !strings.HasPrefix(st["mode"].(string), "schedule") {
		t.Errorf("status mode %v", st["mode"])
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if b, _ := os.ReadFile(marker); strings.Contains(string(b), "applied") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the post-apply hook never ran")
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.converged()
}

// TestSyncFailsWhenPreSyncHookFails: a failing hook skips the sync and
// says why.
func TestSyncFailsWhenPreSyncHookFails(t *testing.T) {
	c := newCluster(t, 1, "--pre-sync-hook", "echo dump failed >&2; exit 4")
	r := georep(t, "sync", "--state", c.primary.state)
	if r.code != 1 || !strings.Contains(r.stderr, "pre-sync hook") {
		t.Fatalf("sync with a failing hook: exit %d: %s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(c.primary.state, "hooks.log")); !strings.Contains(string(b), "dump failed") {
		t.Errorf("hook output not in the log: %q", b)
	}
}

// TestStatusMaxLag: exit 0 while the secondary keeps up, 3 once it has
// been gone for longer than --max-lag.
func TestStatusMaxLag(t *testing.T) {
	c := newCluster(t, 1)
	os.WriteFile(filepath.Join(c.primary.mount, "f"), []byte("x"), 0o644)
	c.syncWait()
	if r := georep(t, "status", "--state", c.primary.state, "--max-lag", "5s"); r.code != 0 {
		t.Fatalf("in sync: exit %d: %s", r.code, r.stderr)
	}
	c.second[0].stop()
	os.WriteFile(filepath.Join(c.primary.mount, "g"), []byte("y"), 0o644)
	time.Sleep(1500 * time.Millisecond)
	r := georep(t, "status", "--state", c.primary.state, "--max-lag", "1s")
	if r.code != 3 || !strings.Contains(r.stderr, "lag") {
		t.Fatalf("secondary down: exit %d: %s", r.code, r.stderr)
	}
	c.second[0].start()
	c.converged()
}
