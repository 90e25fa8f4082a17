package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReplicationRandomWorkload: a tree that exists before replication
// starts is brought over by the initial sync; then rounds of random
// operations of every kind on the primary's mount, each followed by
// sync --wait, verify, and a byte-for-byte, metadata-for-metadata
// comparison of both secondaries' backing dirs with the primary's.
func TestReplicationRandomWorkload(t *testing.T) {
	c := newCluster(t, 2)
	pre := newWorkload(t, c.primary.mount, 1)
	for i := 0; i < 150; i++ {
		pre.step()
	}
	c.converged()
	w := newWorkload(t, c.primary.mount, 2)
	for round := 0; round < 3; round++ {
		for i := 0; i < 200; i++ {
			w.step()
		}
		c.converged()
	}
	t.Logf("operations: %v", w.ops)
	for _, op := range []string{"create", "mkdir", "symlink", "write", "truncate", "unlink", "rmdir", "rename",
		"rename-exchange", "link", "chmod", "chown", "utimes", "xattr", "fallocate", "mknod/copy_file_range"} {
		if w.ops[op] == 0 {
			t.Errorf("the workload never ran %s successfully", op)
		}
	}
}

// TestReplicationInitialSyncOfExistingTree: a secondary that joins late
// gets the tree by comparison: what it already has is not shipped again,
// what it has extra is removed.
func TestReplicationLargeDirectoryRename(t *testing.T) {
	c := newCluster(t, 1)
	big := filepath.Join(c.primary.mount, "big")
	if err := os.Mkdir(big, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		if err := os.WriteFile(filepath.Join(big, fmt.Sprintf("f%04d", i)), make([]byte, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.converged()
	var before unix.Stat_t
	if err := unix.Lstat(filepath.Join(c.second[0].backing, "big"), &before); err != nil {
		t.Fatal(err)
	}
	shipped := bytesShipped(t, c.primary)
	if err := os.Rename(big, filepath.Join(c.primary.mount, "moved")); err != nil {
		t.Fatal(err)
	}
	c.converged()
	var after unix.Stat_t
	if err := unix.Lstat(filepath.Join(c.second[0].backing, "moved"), &after); err != nil {
		t.Fatal(err)
	}
	if after.Ino != before.Ino {
		t.Errorf("the directory was copied on the secondary (inode %d became %d), not renamed", before.Ino, after.Ino)
	}
	if d := bytesShipped(t, c.primary) - shipped; d != 0 {
		t.Errorf("renaming a directory shipped %.0f bytes of file data", d)
	}
}

func bytesShipped(t *testing.T, d *daemon) float64 {
	var n float64
	for _, p := range d.status()["peers"].([]any) {
		n += p.(map[string]any)["bytes_shipped"].(float64)
	}
	return n
}

// TestReplicationSparseFile: holes stay holes on the secondary.
func TestReplicationSparseFile(t *testing.T) {
	c := newCluster(t, 1)
	f, err := os.Create(filepath.Join(c.primary.mount, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 256 << 20, 512 << 20} {
		if _, err := f.WriteAt([]byte("island"), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	c.converged()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(c.second[0].backing, "sparse"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 512<<20+6 || st.Blocks*512 > 1<<20 {
		t.Errorf("secondary's copy: size %d, %d bytes allocated; want the holes kept", st.Size, st.Blocks*512)
	}
}

// TestVerifyFindsDifferences: a change made behind georep's back on the
// secondary is listed by verify, which exits 3.
func TestVerifyFindsDifferences(t *testing.T) {
	c := newCluster(t, 1)
	os.WriteFile(filepath.Join(c.primary.mount, "a"), []byte("primary"), 0o644)
	os.WriteFile(filepath.Join(c.primary.mount, "b"), []byte("primary"), 0o644)
	c.converged()
	os.WriteFile(filepath.Join(c.second[0].backing, "a"), []byte("tampered"), 0o644)
	os.Remove(filepath.Join(c.second[0].backing, "b"))
	os.WriteFile(filepath.Join(c.second[0].backing, "extra"), nil, 0o644)
	r := georep(t, "verify", "--state", c.primary.state)
	if r.code != 3 {
		t.Fatalf("verify of a tampered secondary: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"a: size", "a: content", "b: missing on the replica", "extra: only on the replica"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("verify output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = georep(t, "verify", "--state", c.primary.state, "--json")
	var out map[string][]map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out["s1"]) < 4 {
		t.Errorf("verify --json: %v %s", err, r.stdout)
	}
}
