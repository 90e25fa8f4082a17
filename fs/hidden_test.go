package fs_test

import (
	"testing"

	"github.com/georep/georep/fs"
	gsync "github.com/georep/georep/sync"
)

// The receiver refuses peers' paths in georep's own dir by name, and the
// mount hides that dir by name: the two must be the same.
func TestHiddenDirIsTheOneSyncRefuses(t *testing.T) {
	if fs.HiddenDir != gsync.HiddenDir {
		t.Fatalf("fs hides %q, sync refuses %q", fs.HiddenDir, gsync.HiddenDir)
	}
}
