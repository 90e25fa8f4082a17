package fs

import (
	"os"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// TestPosix runs go-fuse's posixtest suite against the journaled mount,
// each case in a fresh directory of one mount.
func TestPosix(t *testing.T) {
	tm := newTestMount(t)
	for name, fn := range posixtest.All {
		t.Run(name, func(t *testing.T) {
			dir := tm.path(name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			fn(t, dir)
		})
	}
}
