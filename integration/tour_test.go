package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tourDir is where the README's tour keeps its nodes.
const tourDir = "/tmp/georep-tour"

// tourBlocks returns the README tour's shell blocks, in order.
func tourBlocks(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "## Five-minute tour")
	end := strings.Index(s, "### On real machines")
	if start < 0 || end < start {
		t.Fatal("README.md has no five-minute tour section")
	}
	var blocks []string
	for _, part := range strings.Split(s[start:end], "```sh\n")[1:] {
		i := strings.Index(part, "```")
		if i < 0 {
			t.Fatal("unterminated code block in the tour")
		}
		blocks = append(blocks, part[:i])
	}
	return blocks
}

// runTour runs shell blocks as one bash script from the repo's top,
// stopping at the first failing command.
func runTour(t *testing.T, blocks ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	script := "set -euo pipefail\n" + strings.Join(blocks, "\n")
	cmd := exec.CommandContext(ctx, "bash", "-x", "-c", script)
	cmd.Dir = ".."
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		t.Fatalf("the tour failed: %v\n%s", err, out.String())
	}
	return out.String()
}

// cleanTour stops the tour's daemons and removes what it left.
func cleanTour(t *testing.T) {
	exec.Command("pkill", "-f", "georep daemon --state "+tourDir+"/").Run()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && tourMounted() {
		time.Sleep(100 * time.Millisecond)
	}
	if tourMounted() {
		exec.Command("pkill", "-9", "-f", "georep daemon --state "+tourDir+"/").Run()
		for _, m := range []string{"a", "b"} {
			exec.Command("umount", "-l", filepath.Join(tourDir, m, "mnt")).Run()
		}
	}
	if err := os.RemoveAll(tourDir); err != nil {
		t.Errorf("remove %s: %v", tourDir, err)
	}
}

func tourMounted() bool {
	b, _ := os.ReadFile("/proc/mounts")
	return strings.Contains(string(b), tourDir+"/")
}

// TestReadmeTour runs the README's five-minute tour, every block as
// written, and checks what it shows and where the nodes end up.
func TestReadmeTour(t *testing.T) {
	cleanTour(t)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"a", "b"} {
				if b, err := os.ReadFile(filepath.Join(tourDir, n, "state", "daemon.log")); err == nil {
					t.Logf("%s's daemon.log:\n%s", n, tail(string(b), 40))
				}
			}
		}
		cleanTour(t)
	})
	blocks := tourBlocks(t)
	if len(blocks) < 10 {
		t.Fatalf("the tour has %d blocks", len(blocks))
	}
	for _, want := range []string{"georep init", "georep peer add", "georep daemon", "georep status", "georep sync", "--wait",
		"georep verify", "georep failover start", "georep failback start", "georep failback status", "georep failback commit",
		"/takeover", "/metrics", "/healthz"} {
		if !strings.Contains(strings.Join(blocks, "\n"), want) {
			t.Errorf("the tour does not show %q", want)
		}
	}
	out := runTour(t, blocks[:len(blocks)-1]...)
	for _, want := range []string{
		"lag under 30s",
		"every secondary has seq",
		"b: identical",
		"CREATE TABLE t (x int);",
		"ok: a primary, epoch 1",
		"georep_role{role=\"primary\"} 1",
		"b is the primary of epoch 2",
		`<span id="role" class="role primary">primary`,
		"takeover with a wrong password: HTTP 403",
		"failback committed: a is the primary of epoch 3; b is its secondary",
		"written on b while a was down",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the tour's output lacks %q", want)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("tour output:\n%s", out)
	}
	// Where the tour leaves the nodes: a primary at epoch 3, b following
	// it, the trees identical.
	for n, want := range map[string]string{"a": "primary", "b": "secondary"} {
		r := georep(t, "status", "--state", filepath.Join(tourDir, n, "state"), "--json", "--local")
		if r.code != 0 || !strings.Contains(r.stdout, `"role": "`+want+`"`) || !strings.Contains(r.stdout, `"epoch": 3`) {
			t.Errorf("%s after the tour: exit %d\n%s", n, r.code, r.stdout)
		}
	}
	mustGeorep(t, "sync", "--state", filepath.Join(tourDir, "a", "state"), "--wait", "--timeout", "60s")
	if r := georep(t, "verify", "--state", filepath.Join(tourDir, "a", "state")); r.code != 0 {
		t.Errorf("verify after the tour: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The last block stops both daemons; their mounts go away.
	runTour(t, blocks[0], blocks[len(blocks)-1])
	deadline := time.Now().Add(15 * time.Second)
	for tourMounted() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if tourMounted() {
		t.Error("the tour's last step left its mounts")
	}
}
