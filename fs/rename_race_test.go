package fs

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/georep/georep/journal"
)

// TestDirRenameRaceNamesCurrentPath renames a directory back and forth
// while another goroutine writes to a file inside it through an open
// descriptor (the kernel does not serialise the two). Replaying the
// journal's renames in seq order, every write record must name the path
// the file had at that point: a record naming a path from before a rename
// would send a secondary's data to the wrong place.
func TestDirRenameRaceNamesCurrentPath(t *testing.T) {
	tm := newTestMount(t)
	must(t, os.MkdirAll(tm.path("a/sub"), 0o755))
	must(t, os.WriteFile(tm.path("a/sub/f"), make([]byte, 4096), 0o644))
	since := tm.n.Journal.Seq()

	f, err := os.OpenFile(tm.path("a/sub/f"), os.O_WRONLY, 0)
	must(t, err)
	defer f.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := f.WriteAt([]byte{byte(i)}, int64(i%4096)); err != nil {
				t.Errorf("write: %v", err)
				return
			}
			if i%5 == 0 {
				// End the session so the next write opens a new one
				// and names the path again.
				if err := tm.m.Volume.Cut(); err != nil {
					t.Errorf("cut: %v", err)
					return
				}
			}
		}
	}()
	names := []string{"a", "b"}
	deadline := time.Now().Add(time.Second)
	renames := 0
	for time.Now().Before(deadline) {
		must(t, os.Rename(tm.path(names[renames%2]), tm.path(names[(renames+1)%2])))
		renames++
	}
	close(stop)
	wg.Wait()

	dir := "a"
	writes := 0
	for _, r := range tm.records(t, since) {
		switch r.Op {
		case journal.OpRename:
			if r.Path != dir {
				t.Fatalf("seq %d renames %q but the directory is %q", r.Seq, r.Path, dir)
			}
			dir = r.NewPath
		case journal.OpWrite:
			writes++
			if want := dir + "/sub/f"; r.Path != want {
				t.Fatalf("seq %d: write record names %q, the file was at %q", r.Seq, r.Path, want)
			}
		}
	}
	if renames < 10 || writes < 10 {
		t.Fatalf("too little concurrency to test: %d renames, %d write records", renames, writes)
	}
	t.Logf("%d renames, %d write records, all naming the current path", renames, writes)
}
