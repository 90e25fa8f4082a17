package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// oneLineError checks a failed run: the expected exit code and a single
// line on stderr that contains want, and no panic.
func oneLineError(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d (stderr %q)", r.code, code, r.stderr)
	}
	msg := strings.TrimRight(r.stderr, "\n")
	if strings.Contains(msg, "\n") || strings.Contains(msg, "goroutine") || strings.Contains(msg, "panic") {
		t.Errorf("stderr is not one clear line:\n%s", r.stderr)
	}
	if !strings.Contains(msg, want) {
		t.Errorf("stderr %q does not say %q", msg, want)
	}
}

// runDaemonExpectingFailure runs a daemon that must refuse to start.
func runDaemonExpectingFailure(t *testing.T, args ...string) result {
	t.Helper()
	r := georep(t, append([]string{"daemon"}, args...)...)
	if r.code == 0 {
		t.Fatalf("daemon %v started; want a refusal", args)
	}
	return r
}

func TestBadInput(t *testing.T) {
	t.Run("missing backing dir", func(t *testing.T) {
		state, backing, mount := nodeDirs(t, "a")
		r := runDaemonExpectingFailure(t, "--state", state, "--backing", backing+"/nope", "--mount", mount, "--primary")
		oneLineError(t, r, 1, "does not exist")
		if mounted(mount) {
			t.Error("something is mounted after a refused start")
		}
	})
	t.Run("missing mount point", func(t *testing.T) {
		state, backing, mount := nodeDirs(t, "a")
		r := runDaemonExpectingFailure(t, "--state", state, "--backing", backing, "--mount", mount+"/nope", "--primary")
		oneLineError(t, r, 1, "mount point")
	})
	t.Run("mount point in use", func(t *testing.T) {
		state, backing, mount := nodeDirs(t, "a")
		startDaemon(t, state, backing, mount, "--primary")
		link := filepath.Join(t.TempDir(), "link")
		if err := os.Symlink(mount, link); err != nil {
			t.Fatal(err)
		}
		// Directly, and through a symlink (the mount table holds resolved
		// paths).
		for _, m := range []string{mount, link} {
			state2, backing2, _ := nodeDirs(t, "b")
			r := runDaemonExpectingFailure(t, "--state", state2, "--backing", backing2, "--mount", m, "--primary")
			oneLineError(t, r, 1, "mount point in use")
		}
	})
	t.Run("state dir in use", func(t *testing.T) {
		state, backing, mount := nodeDirs(t, "a")
		startDaemon(t, state, backing, mount, "--primary")
		_, _, mount2 := nodeDirs(t, "b")
		r := runDaemonExpectingFailure(t, "--state", state, "--backing", backing, "--mount", mount2, "--primary")
		oneLineError(t, r, 1, "in use by another georep process")
	})
	t.Run("state dir of another node", func(t *testing.T) {
		state, backing, mount := nodeDirs(t, "a")
		d := startDaemon(t, state, backing, mount, "--primary")
		d.stop()
		state2, _, _ := nodeDirs(t, "b")
		r := runDaemonExpectingFailure(t, "--state", state2, "--backing", backing, "--mount", mount, "--primary")
		oneLineError(t, r, 1, "backing dir belongs to node")
	})
	t.Run("uninitialized state dir", func(t *testing.T) {
		_, backing, mount := nodeDirs(t, "a")
		r := runDaemonExpectingFailure(t, "--state", t.TempDir(), "--backing", backing, "--mount", mount, "--primary")
		oneLineError(t, r, 1, "not initialized")
	})
	t.Run("unreadable journal log", func(t *testing.T) {
		state, backing, mount := nodeDirs(t, "a")
		d := startDaemon(t, state, backing, mount, "--primary")
		d.stop()
		wal := filepath.Join(state, "journal", "wal")
		if err := os.Remove(wal); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(wal, 0o700); err != nil {
			t.Fatal(err)
		}
		r := runDaemonExpectingFailure(t, "--state", state, "--backing", backing, "--mount", mount, "--primary")
		oneLineError(t, r, 1, "open journal")
		oneLineError(t, georep(t, "journal", "--state", state), 1, "open journal")
	})
	t.Run("corrupt journal database", func(t *testing.T) {
		state, backing, mount := nodeDirs(t, "a")
		d := startDaemon(t, state, backing, mount, "--primary")
		if err := os.WriteFile(filepath.Join(mount, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		d.stop()
		if err := os.WriteFile(filepath.Join(state, "db", "MANIFEST"), []byte("garbage, not a manifest"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runDaemonExpectingFailure(t, "--state", state, "--backing", backing, "--mount", mount, "--primary")
		oneLineError(t, r, 1, "open journal database")
	})
	t.Run("bad usage", func(t *testing.T) {
		oneLineError(t, georep(t, "daemon"), 2, "--state is required")
		oneLineError(t, georep(t, "init", "--bogus"), 2, "flag provided but not defined")
		oneLineError(t, georep(t, "journal", "--state", t.TempDir(), "--since", "x"), 2, "invalid value")
	})
	t.Run("init twice", func(t *testing.T) {
		state, _, _ := nodeDirs(t, "a")
		oneLineError(t, georep(t, "init", "--state", state, "--name", "a"), 1, "already holds node")
	})
	t.Run("bad node name", func(t *testing.T) {
		oneLineError(t, georep(t, "init", "--state", t.TempDir(), "--name", "a/b"), 1, "bad node name")
	})
	t.Run("peer add", func(t *testing.T) {
		state, _, _ := nodeDirs(t, "a")
		id := strings.Repeat("ab", 32)
		mustGeorep(t, "peer", "add", "--state", state, "b", "127.0.0.1:7401", id)
		if out := mustGeorep(t, "peer", "list", "--state", state, "--json"); !strings.Contains(out, id) {
			t.Errorf("peer list: %s", out)
		}
		oneLineError(t, georep(t, "peer", "add", "--state", state, "b", "127.0.0.1:7402", strings.Repeat("cd", 32)), 1, "already trusted")
		oneLineError(t, georep(t, "peer", "add", "--state", state, "c", "127.0.0.1:7402", "not-an-id"), 1, "bad node ID")
		oneLineError(t, georep(t, "peer", "add", "--state", state, "c", "no-port", strings.Repeat("cd", 32)), 1, "bad peer address")
		oneLineError(t, georep(t, "peer", "add", "--state", state, "c"), 2, "peer add takes")
	})
	t.Run("no daemon for status", func(t *testing.T) {
		state, _, _ := nodeDirs(t, "a")
		oneLineError(t, georep(t, "status", "--state", state), 1, "no georep daemon is running")
	})
}

// TestIDMatchesInit checks that id prints what init printed.
func TestIDMatchesInit(t *testing.T) {
	state := filepath.Join(t.TempDir(), "s")
	id := strings.TrimSpace(mustGeorep(t, "init", "--state", state, "--name", "n1", "--listen", "127.0.0.1:7000"))
	if len(id) != 64 {
		t.Fatalf("node ID %q is not a SHA-256 fingerprint", id)
	}
	if got := strings.TrimSpace(mustGeorep(t, "id", "--state", state)); got != id {
		t.Fatalf("id printed %q, init printed %q", got, id)
	}
}

// TestSigtermUnmountsCleanly checks that SIGTERM and SIGINT unmount and
// exit 0, leaving the data in the backing dir.
func TestSigtermUnmountsCleanly(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		state, backing, mount := nodeDirs(t, "a")
		d := startDaemon(t, state, backing, mount, "--primary")
		if err := os.WriteFile(filepath.Join(mount, "f"), []byte("kept"), 0o644); err != nil {
			t.Fatal(err)
		}
		d.cmd.Process.Signal(sig)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			t.Fatalf("daemon did not stop on %v", sig)
		}
		if code := d.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit %d after %v: %s", code, sig, d.log.String())
		}
		if mounted(mount) {
			t.Errorf("%s still mounted after %v", mount, sig)
		}
		if b, err := os.ReadFile(filepath.Join(backing, "f")); err != nil || string(b) != "kept" {
			t.Errorf("backing file after %v: %q %v", sig, b, err)
		}
		// The journal is readable without a daemon.
		if recs := journalSince(t, state, 0); len(recs) < 2 {
			t.Errorf("journal after stop has %d records", len(recs))
		}
	}
}

// TestInPlaceMount mounts over the backing dir itself, as for
// ~/srv/backup, survives a SIGKILL and restart, and keeps every file.
func TestInPlaceMount(t *testing.T) {
	state, backing, _ := nodeDirs(t, "a")
	if err := os.WriteFile(filepath.Join(backing, "existing"), []byte("before"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, state, backing, backing, "--primary")
	if !mounted(backing) {
		t.Fatal("backing dir is not mounted over")
	}
	if b, err := os.ReadFile(filepath.Join(backing, "existing")); err != nil || string(b) != "before" {
		t.Fatalf("existing file through the in-place mount: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(backing, "new"), []byte("written through the mount"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(backing, ".georep")); !os.IsNotExist(err) {
		t.Errorf(".georep visible through the in-place mount: %v", err)
	}
	d.kill()
	d.restart()
	if b, err := os.ReadFile(filepath.Join(backing, "new")); err != nil || string(b) != "written through the mount" {
		t.Fatalf("file after SIGKILL and restart: %q %v", b, err)
	}
	// The journal names the new file: by its create record, or, if the
	// kill took that record before it reached the log, by the resync that
	// recovery made of the create's intent.
	recs := journalSince(t, state, 0)
	var named bool
	for _, r := range recs {
		if (r.Op == "create" || r.Op == "resync") && r.Path == "new" {
			named = true
		}
	}
	if !named {
		t.Errorf("journal does not name new: %+v", recs)
	}
	d.stop()
	if mounted(backing) {
		t.Fatal("in-place mount left after stop")
	}
	if b, err := os.ReadFile(filepath.Join(backing, "new")); err != nil || string(b) != "written through the mount" {
		t.Fatalf("file in the backing dir after stop: %q %v", b, err)
	}
}

// TestSecondaryIsReadOnly checks that a node started without --primary
// refuses writes with EROFS but serves reads.
func TestSecondaryIsReadOnly(t *testing.T) {
	state, backing, mount := nodeDirs(t, "a")
	if err := os.WriteFile(filepath.Join(backing, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, state, backing, mount)
	if b, err := os.ReadFile(filepath.Join(mount, "f")); err != nil || string(b) != "data" {
		t.Fatalf("read on a secondary: %q %v", b, err)
	}
	for name, op := range map[string]func() error{
		"create": func() error { return os.WriteFile(filepath.Join(mount, "g"), nil, 0o644) },
		"write":  func() error { return os.WriteFile(filepath.Join(mount, "f"), []byte("x"), 0o644) },
		"mkdir":  func() error { return os.Mkdir(filepath.Join(mount, "d"), 0o755) },
		"unlink": func() error { return os.Remove(filepath.Join(mount, "f")) },
		"chmod":  func() error { return os.Chmod(filepath.Join(mount, "f"), 0o600) },
		"rename": func() error { return os.Rename(filepath.Join(mount, "f"), filepath.Join(mount, "h")) },
	} {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s on a secondary: %v, want EROFS", name, err)
		}
	}
}

// TestDetach: daemon --detach returns once the daemon serves, and when it
// cannot start, exits 1 with the daemon's one-line reason.
func TestDetach(t *testing.T) {
	state, backing, mount := nodeDirs(t, "d")
	// A takeover password given to a daemon pointed at a dir that is no
	// state dir is not written there.
	empty, pw := t.TempDir(), filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("password-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, extra := range [][]string{nil, {"--detach"}} {
		args := append([]string{"daemon", "--state", empty, "--backing", backing, "--mount", mount, "--takeover-password-file", pw}, extra...)
		if r := georep(t, args...); r.code != 1 || !strings.Contains(r.stderr, "not initialized") {
			t.Fatalf("daemon %v on an empty dir: exit %d, %q", extra, r.code, r.stderr)
		}
		if ents, _ := os.ReadDir(empty); len(ents) != 0 {
			t.Fatalf("daemon %v wrote into a dir that is no state dir: %v", extra, ents)
		}
	}
	r := georep(t, "daemon", "--state", state, "--backing", backing, "--mount", mount+"-missing", "--detach")
	if r.code != 1 || !strings.Contains(r.stderr, "the daemon did not start: mount point") || !strings.Contains(r.stderr, "does not exist") {
		t.Fatalf("detach with a missing mount point: exit %d, %q", r.code, r.stderr)
	}
	r = georep(t, "daemon", "--state", state, "--backing", backing, "--mount", mount, "--primary", "--detach")
	t.Cleanup(func() {
		exec.Command("pkill", "-f", "daemon --state "+state+" ").Run()
		for i := 0; i < 100 && mounted(mount); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if mounted(mount) {
			exec.Command("umount", "-l", mount).Run()
		}
	})
	if r.code != 0 || !strings.Contains(r.stdout, "georep daemon started (pid ") {
		t.Fatalf("detach: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	// It serves at once, and shows up as "georep daemon" for ps and pgrep.
	mustGeorep(t, "status", "--state", state, "--local")
	if !mounted(mount) {
		t.Fatal("not mounted after detach returned")
	}
	out, err := exec.Command("pgrep", "-f", "georep daemon --state "+state+" ").Output()
	if err != nil || len(strings.Fields(string(out))) != 1 {
		t.Fatalf("pgrep finds %q (%v)", out, err)
	}
}
