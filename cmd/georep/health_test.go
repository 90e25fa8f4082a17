package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMountAnswers: a directory that is not a FUSE mount is reported as
// such, a missing one as not answering.
func TestMountAnswers(t *testing.T) {
	dir := t.TempDir()
	if err := mountAnswers(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "is not mounted") {
		t.Errorf("plain dir: %v", err)
	}
	if err := mountAnswers(context.Background(), filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("missing dir: %v", err)
	}
}

func TestTailLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	if got := tailLines(p, 3, 1024); got != nil {
		t.Errorf("missing file: %q", got)
	}
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := tailLines(p, 3, 1024); strings.Join(got, "|") != "line 97|line 98|line 99" {
		t.Errorf("last 3: %q", got)
	}
	// A byte limit that cuts a line drops the partial one.
	got := tailLines(p, 50, 20)
	if len(got) == 0 || len(got) > 3 || got[len(got)-1] != "line 99" || !strings.HasPrefix(got[0], "line ") {
		t.Errorf("last 20 bytes: %q", got)
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := tailLines(p, 3, 1024); got != nil {
		t.Errorf("empty file: %q", got)
	}
}
