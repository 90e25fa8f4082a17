package fs

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadOnlyMode switches a live mount to read-only and back.
func TestReadOnlyMode(t *testing.T) {
	tm := newTestMount(t)
	must(t, os.WriteFile(tm.path("f"), []byte("data"), 0o644))
	tm.m.Volume.SetReadOnly(true)
	if !tm.m.Volume.ReadOnly() {
		t.Fatal("ReadOnly() false after SetReadOnly(true)")
	}
	seq := tm.n.Journal.Seq()
	checks := map[string]func() error{
		"create":   func() error { return os.WriteFile(tm.path("g"), nil, 0o644) },
		"open rw":  func() error { f, err := os.OpenFile(tm.path("f"), os.O_RDWR, 0); f.Close(); return err },
		"mkdir":    func() error { return os.Mkdir(tm.path("d"), 0o755) },
		"unlink":   func() error { return os.Remove(tm.path("f")) },
		"rename":   func() error { return os.Rename(tm.path("f"), tm.path("h")) },
		"chmod":    func() error { return os.Chmod(tm.path("f"), 0o600) },
		"truncate": func() error { return os.Truncate(tm.path("f"), 0) },
		"symlink":  func() error { return os.Symlink("f", tm.path("s")) },
	}
	for name, op := range checks {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s in read-only mode: %v, want EROFS", name, err)
		}
	}
	if b, err := os.ReadFile(tm.path("f")); err != nil || string(b) != "data" {
		t.Errorf("read in read-only mode: %q %v", b, err)
	}
	if got := tm.n.Journal.Seq(); got != seq {
		t.Errorf("read-only mode journaled %d records", got-seq)
	}
	tm.m.Volume.SetReadOnly(false)
	must(t, os.WriteFile(tm.path("g"), []byte("ok"), 0o644))
}

// TestFreezeBlocksWriters freezes the mount while a writer runs: the
// writer's calls block (they do not fail) until thaw, readers go on, and
// Freeze returns only once no mutation is in flight.
func TestFreezeBlocksWriters(t *testing.T) {
	tm := newTestMount(t)
	must(t, os.WriteFile(tm.path("r"), []byte("readable"), 0o644))
	f, err := os.OpenFile(tm.path("w"), os.O_CREATE|os.O_WRONLY, 0o644)
	must(t, err)
	defer f.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	must(t, tm.m.Volume.Freeze(ctx))
	seq := tm.n.Journal.Seq()

	done := make(chan error, 2)
	go func() { _, err := f.Write([]byte("blocked write")); done <- err }()
	go func() { done <- os.Mkdir(tm.path("d"), 0o755) }()
	select {
	case err := <-done:
		t.Fatalf("a mutation completed during freeze (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	if b, err := os.ReadFile(tm.path("r")); err != nil || string(b) != "readable" {
		t.Errorf("read during freeze: %q %v", b, err)
	}
	if got := tm.n.Journal.Seq(); got != seq {
		t.Errorf("%d records journaled during freeze", got-seq)
	}
	thawed := time.Now()
	tm.m.Volume.Thaw()
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("mutation after thaw failed: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("mutation still blocked 5s after thaw")
		}
	}
	t.Logf("blocked mutations completed %v after thaw", time.Since(thawed))
	if _, err := os.Stat(tm.path("d")); err != nil {
		t.Errorf("mkdir did not happen after thaw: %v", err)
	}
}

// TestFreezeWaitsForInflight checks that Freeze does not return while a
// mutation is running, and gives up with the context.
func TestFreezeWaitsForInflight(t *testing.T) {
	var g gate
	g.init()
	if errno := g.enter(context.Background()); errno != 0 {
		t.Fatal(errno)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := g.freeze(ctx); err == nil {
		t.Fatal("freeze returned with a mutation in flight")
	}
	// A failed freeze leaves the gate open.
	if errno := g.enter(context.Background()); errno != 0 {
		t.Fatalf("enter after a failed freeze: %v", errno)
	}
	g.leave()
	done := make(chan error)
	go func() { done <- g.freeze(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("freeze returned before the mutation left")
	default:
	}
	g.leave()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A blocked caller gives up when its context ends (EINTR).
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if errno := g.enter(ctx2); errno != syscall.EINTR {
		t.Fatalf("enter while frozen with an ending context: %v, want EINTR", errno)
	}
	g.thaw()
}

// TestFreezeNests checks that nested freezes thaw only at the outermost
// Thaw (a repair's quiet instant inside a failback commit's freeze).
func TestFreezeNests(t *testing.T) {
	var g gate
	g.init()
	var held []time.Duration
	g.onThaw = func(d time.Duration) { held = append(held, d) }
	ctx := context.Background()
	must(t, g.freeze(ctx))
	must(t, g.freeze(ctx))
	g.thaw()
	if len(held) != 0 {
		t.Fatalf("the inner thaw reported a freeze: %v", held)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if errno := g.enter(short); errno != syscall.EINTR {
		t.Fatalf("enter after the inner thaw: %v, want to stay blocked (EINTR)", errno)
	}
	g.thaw()
	if errno := g.enter(ctx); errno != 0 {
		t.Fatalf("enter after the outer thaw: %v", errno)
	}
	// One freeze reported, from the outer Freeze to the outer Thaw (the
	// 50 ms enter above waited inside it).
	if len(held) != 1 || held[0] < 50*time.Millisecond {
		t.Fatalf("freezes reported: %v, want one of at least 50ms", held)
	}
	g.leave()
	g.thaw() // one too many: harmless
	if errno := g.enter(ctx); errno != 0 {
		t.Fatalf("enter after an extra thaw: %v", errno)
	}
	g.leave()
	if len(held) != 1 {
		t.Fatalf("an extra thaw reported a freeze: %v", held)
	}
}

// TestFenceFailsBlockedWriters freezes the mount with a writer blocked,
// then fences it: the blocked write fails with EROFS at thaw, new writes
// fail at once, and nothing more is journaled.
func TestFenceFailsBlockedWriters(t *testing.T) {
	tm := newTestMount(t)
	f, err := os.OpenFile(tm.path("w"), os.O_CREATE|os.O_WRONLY, 0o644)
	must(t, err)
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	must(t, tm.m.Volume.Freeze(ctx))
	done := make(chan error, 1)
	go func() { _, err := f.Write([]byte("blocked")); done <- err }()
	time.Sleep(100 * time.Millisecond)
	must(t, tm.m.Volume.Fence(ctx))
	seq := tm.n.Journal.Seq()
	tm.m.Volume.Thaw()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("blocked write after fence and thaw: %v, want EROFS", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked write still blocked after thaw")
	}
	if err := os.WriteFile(tm.path("x"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create on a fenced mount: %v, want EROFS", err)
	}
	if got := tm.n.Journal.Seq(); got != seq {
		t.Errorf("%d records journaled after the fence", got-seq)
	}
}

// TestWarnHidden: a mount point that holds entries is reported (they were
// written while nothing was mounted there), unless it is the backing dir
// itself (in-place mount).
func TestWarnHidden(t *testing.T) {
	mnt, backing := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(mnt, "stray"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(backing, "data"), nil, 0o644))
	var st syscall.Stat_t
	must(t, syscall.Stat(backing, &st))
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	warnHidden(mnt, &st, log)
	if !strings.Contains(buf.String(), "stray") {
		t.Errorf("entries under the mount point not reported: %q", buf.String())
	}
	buf.Reset()
	warnHidden(backing, &st, log)
	if buf.Len() != 0 {
		t.Errorf("an in-place mount's backing dir reported: %q", buf.String())
	}
}
