package journal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLogFullDisk puts the log on a file system too small for it to grow:
// the append that needs more room fails with ENOSPC and writes nothing,
// no SIGBUS ever hits the mapping, and every frame before it still
// replays.
func TestLogFullDisk(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=5m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)

	l, err := createLog(filepath.Join(dir, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	frame := appendFrame(nil, kindDone, u64(7))
	var full error
	n := 0
	for i := 0; i < 1<<20; i++ {
		before := l.off
		if full = l.append(frame); full != nil {
			if l.off != before {
				t.Fatalf("a failed append moved the log from %d to %d", before, l.off)
			}
			break
		}
		n++
	}
	if !errors.Is(full, unix.ENOSPC) {
		t.Fatalf("log grew past the file system's size (%d frames), err %v", n, full)
	}
	if err := l.f.Sync(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := decodeWAL(data)
	if len(entries) != n {
		t.Fatalf("replay finds %d frames, %d were appended", len(entries), n)
	}
}
