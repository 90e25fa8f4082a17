package integration

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// entry is the state of one path in a tree snapshot.
type entry struct {
	mode     fs.FileMode
	size     int64
	sum      [32]byte
	linkDest string
	data     string // file content, for byte-level checks
}

// snapshot walks the backing dir (without georep's own dir).
func snapshot(t testing.TB, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	walkTree(t, root, func(rel, p string, fi os.FileInfo) error {
		e := entry{mode: fi.Mode()}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.size, e.sum, e.data = int64(len(b)), sha256.Sum256(b), string(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			e.linkDest, _ = os.Readlink(p)
		}
		out[rel] = e
		return nil
	})
	return out
}

// walkTree calls fn for every entry below root (georep's own dir
// excluded) with its root-relative path, its path and its lstat.
func walkTree(t testing.TB, root string, fn func(rel, p string, fi os.FileInfo) error) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == ".georep" {
			return filepath.SkipDir
		}
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		return fn(rel, p, fi)
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
}

// coverage is what a run of journal records names: paths, and the
// prefixes of renamed directories (everything below them moved).
type coverage struct {
	paths    map[string]bool
	prefixes []string
	// whole: paths whose file may have been replaced or changed in ways
	// not described by ranges (ship whole); ranges: write ranges by path.
	whole  map[string]bool
	ranges map[string][][2]int64
}

func newCoverage(recs []record) *coverage {
	c := &coverage{paths: map[string]bool{}, whole: map[string]bool{}, ranges: map[string][][2]int64{}}
	for _, r := range recs {
		c.paths[r.Path] = true
		if r.NewPath != "" {
			c.paths[r.NewPath] = true
		}
		switch {
		case r.Op == "rename":
			c.prefixes = append(c.prefixes, r.Path+"/", r.NewPath+"/")
			c.whole[r.Path], c.whole[r.NewPath] = true, true
		case r.Op == "resync": // the path and everything below it
			c.prefixes = append(c.prefixes, r.Path+"/")
			c.whole[r.Path] = true
		case r.Op == "write" && !r.Whole:
			c.ranges[r.Path] = append(c.ranges[r.Path], r.Ranges...)
		case r.Op == "setattr", r.Op == "setxattr", r.Op == "removexattr":
		default: // create, truncate, fallocate, unlink, link, resync, whole writes
			c.whole[r.Path] = true
			if r.NewPath != "" {
				c.whole[r.NewPath] = true
			}
		}
	}
	return c
}

// uncoveredByte returns the first offset where before and after differ
// outside every write range the journal names for p, or -1. A file the
// journal says must be shipped whole is covered entirely.
func (c *coverage) uncoveredByte(p string, before, after string) int64 {
	if c.whole[p] {
		return -1
	}
	for _, pre := range c.prefixes {
		if strings.HasPrefix(p, pre) {
			return -1
		}
	}
	in := func(off int64) bool {
		for _, r := range c.ranges[p] {
			if off >= r[0] && off < r[0]+r[1] {
				return true
			}
		}
		return false
	}
	// Writing past the end leaves a hole up to the write: replaying the
	// write reproduces it, so zeros past the old size and below the
	// furthest named write are covered.
	var furthest int64
	for _, r := range c.ranges[p] {
		furthest = max(furthest, r[0]+r[1])
	}
	n := max(len(before), len(after))
	for i := 0; i < n; i++ {
		if i >= len(before) && i < len(after) && after[i] == 0 && int64(i) < furthest {
			continue
		}
		var b, a byte = 0, 0
		inB, inA := i < len(before), i < len(after)
		if inB {
			b = before[i]
		}
		if inA {
			a = after[i]
		}
		if (inB != inA || a != b) && !in(int64(i)) {
			return int64(i)
		}
	}
	return -1
}

func (c *coverage) names(p string) bool {
	if c.paths[p] {
		return true
	}
	for _, pre := range c.prefixes {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// ledger records the operations acknowledged to the writers.
type ledger struct {
	mu  sync.Mutex
	ops []string // "op path [path]"
	all map[string]bool
}

func (l *ledger) ack(op string, paths ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op+" "+strings.Join(paths, " "))
	for _, p := range paths {
		l.all[p] = true
	}
}

// writer hammers its own directory of the mount until an operation fails
// (the daemon was killed) or stop closes. Every success goes to the ledger.
func writer(mnt, dir string, seed int64, l *ledger, stop <-chan struct{}) {
	rng := rand.New(rand.NewSource(seed))
	rel := func(name string) string { return dir + "/" + name }
	abs := func(r string) string { return filepath.Join(mnt, r) }
	buf := make([]byte, 64<<10)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		a := fmt.Sprintf("f%d", rng.Intn(12))
		b := fmt.Sprintf("f%d", rng.Intn(12))
		var err error
		switch op := rng.Intn(10); op {
		case 0, 1: // create or overwrite with new content
			rng.Read(buf[:4096])
			var f *os.File
			_, serr := os.Lstat(abs(rel(a)))
			if f, err = os.OpenFile(abs(rel(a)), os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				if os.IsNotExist(serr) { // this writer alone uses its dir
					l.ack("create", rel(a))
				}
				if _, err = f.Write(buf[:1+rng.Intn(4096)]); err == nil {
					l.ack("write", rel(a))
				}
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		case 2, 3, 4: // writes at random offsets, several per open
			var f *os.File
			if f, err = os.OpenFile(abs(rel(a)), os.O_WRONLY, 0); err == nil {
				for k := 0; k < 1+rng.Intn(8) && err == nil; k++ {
					rng.Read(buf[:512])
					if _, err = f.WriteAt(buf[:1+rng.Intn(512)], rng.Int63n(256<<10)); err == nil {
						l.ack("write", rel(a))
					}
				}
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			} else if os.IsNotExist(err) {
				err = nil
			}
		case 5: // rename a file (onto itself is a no-op the kernel answers alone)
			if a == b {
				continue
			}
			if err = os.Rename(abs(rel(a)), abs(rel(b))); err == nil {
				l.ack("rename", rel(a), rel(b))
			} else if os.IsNotExist(err) {
				err = nil
			}
		case 6: // delete
			if err = os.Remove(abs(rel(a))); err == nil {
				l.ack("unlink", rel(a))
			} else if os.IsNotExist(err) {
				err = nil
			}
		case 7: // truncate
			if err = os.Truncate(abs(rel(a)), rng.Int63n(8192)); err == nil {
				l.ack("truncate", rel(a))
			} else if os.IsNotExist(err) {
				err = nil
			}
		case 8: // a directory with files, renamed whole
			d, e := rel("d"), rel("e")
			if _, serr := os.Stat(abs(d)); serr != nil {
				d, e = e, d
			}
			if _, serr := os.Stat(abs(d)); serr != nil {
				if err = os.Mkdir(abs(d), 0o755); err == nil {
					l.ack("mkdir", d)
				}
			}
			if err == nil {
				if err = os.WriteFile(abs(d+"/"+a), buf[:100], 0o644); err == nil {
					l.ack("create", d+"/"+a)
				}
			}
			if err == nil {
				if err = os.Rename(abs(d), abs(e)); err == nil {
					l.ack("rename", d, e)
				}
			}
		case 9: // metadata
			if err = os.Chmod(abs(rel(a)), fs.FileMode(0o600+rng.Intn(0o100))); err == nil {
				l.ack("chmod", rel(a))
			} else if os.IsNotExist(err) {
				err = nil
			}
		}
		if err != nil {
			return // the daemon is gone
		}
	}
}

// dataWriter only ever writes at random offsets of its own files, in
// sessions of many writes, so every byte it changes can be covered only by
// the write ranges the journal names (nothing else touches those files).
func dataWriter(mnt, dir string, seed int64, l *ledger, stop <-chan struct{}) {
	rng := rand.New(rand.NewSource(seed))
	buf := make([]byte, 4096)
	for {
		rel := fmt.Sprintf("%s/f%d", dir, rng.Intn(6))
		f, err := os.OpenFile(filepath.Join(mnt, rel), os.O_WRONLY, 0)
		if err != nil {
			return
		}
		for k := 0; k < 1+rng.Intn(64); k++ {
			select {
			case <-stop:
				f.Close()
				return
			default:
			}
			rng.Read(buf)
			if _, err := f.WriteAt(buf[:1+rng.Intn(4096)], rng.Int63n(60<<10)); err != nil {
				f.Close()
				return
			}
			l.ack("write", rel)
		}
		if err := f.Close(); err != nil {
			return
		}
	}
}

// TestCrashJournalNamesEveryChange kills the daemon with SIGKILL at a
// random moment while writers hammer the mount, twenty times over, and
// checks after each restart that every path whose state differs from the
// copy taken before the writers started, and every path of every
// acknowledged operation, is named by the journal.
func TestCrashJournalNamesEveryChange(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	state, backing, mount := nodeDirs(t, "crash")
	const writers, dataWriters = 4, 2
	for w := 0; w < writers+dataWriters; w++ {
		dir := filepath.Join(backing, fmt.Sprintf("w%d", w))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for k := 0; k < 6; k++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", k)), make([]byte, 64<<10), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := startDaemon(t, state, backing, mount, "--primary")
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for round := 0; round < rounds; round++ {
		seq0 := d.seq()
		before := snapshot(t, backing)
		l := &ledger{all: map[string]bool{}}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				writer(mount, fmt.Sprintf("w%d", w), rng.Int63(), l, stop)
			}(w)
		}
		for w := writers; w < writers+dataWriters; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				dataWriter(mount, fmt.Sprintf("w%d", w), rng.Int63(), l, stop)
			}(w)
		}
		time.Sleep(time.Duration(20+rng.Intn(300)) * time.Millisecond)
		d.kill()
		close(stop)
		wg.Wait()
		d.restart()
		recs := journalSince(t, state, seq0)
		cov := newCoverage(recs)
		after := snapshot(t, backing)
		changed := 0
		for p, e := range after {
			if old, ok := before[p]; !ok || old != e {
				changed++
				if !cov.names(p) {
					t.Errorf("round %d: %s changed but the journal does not name it", round, p)
				}
				if ok && old.mode.IsRegular() && e.mode.IsRegular() {
					if off := cov.uncoveredByte(p, old.data, e.data); off >= 0 {
						t.Errorf("round %d: %s differs at byte %d (sizes %d -> %d), outside every range the journal names", round, p, off, old.size, e.size)
						for _, r := range recs {
							if r.Path == p || r.NewPath == p {
								t.Logf("  %+v", r)
							}
						}
					}
				}
			}
		}
		for p := range before {
			if _, ok := after[p]; !ok {
				changed++
				if !cov.names(p) {
					t.Errorf("round %d: %s was removed but the journal does not name it", round, p)
				}
			}
		}
		for p := range l.all {
			if !cov.names(p) {
				t.Errorf("round %d: an acknowledged operation on %s has no journal record", round, p)
				for _, op := range l.ops {
					if strings.Contains(op+" ", " "+p+" ") {
						t.Logf("  acknowledged: %s", op)
					}
				}
			}
		}
		t.Logf("round %d: %d acknowledged ops, %d paths changed, %d records", round, len(l.ops), changed, len(recs))
		if t.Failed() {
			if dump := os.Getenv("GEOREP_CRASH_DUMP"); dump != "" {
				out := mustGeorep(t, "journal", "--state", state, "--json", "--since", fmt.Sprint(seq0))
				os.WriteFile(dump, []byte(out), 0o644)
			}
			t.Logf("daemon log:\n%s", d.log.String())
			return
		}
	}
}
