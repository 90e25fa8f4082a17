package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestQuick runs the whole benchmark in -quick mode into a BENCHMARKS.md
// that already holds another benchmark's section, and checks the table and
// that the other section is kept.
func TestQuick(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (DirectMount)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "BENCHMARKS.md")
	other := "<!-- section: replication -->\nreplication numbers\n<!-- /section -->\n"
	if err := os.WriteFile(out, []byte("# Benchmarks\n\n"+other), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, progress bytes.Buffer
	err := run(context.Background(), config{out: out, dir: dir, quick: true}, &stdout, &progress)
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if !strings.Contains(doc, other) {
		t.Errorf("other section lost:\n%s", doc)
	}
	if strings.Count(doc, sectionBegin) != 1 {
		t.Errorf("want one mount section:\n%s", doc)
	}
	for _, text := range []string{doc, stdout.String()} {
		checkTable(t, text)
	}
	// The scratch dir (created in dir) is gone.
	if left, _ := filepath.Glob(filepath.Join(dir, "georep-bench-*")); len(left) != 0 {
		t.Errorf("scratch dir left: %v", left)
	}
}

// checkTable finds the main table in text and checks that every value
// cell is a number > 0.
func checkTable(t *testing.T, text string) {
	t.Helper()
	const header = "| workload | native | go-fuse loopback | georep | georep / loopback | georep / native | target |"
	lines := strings.Split(text, "\n")
	i := 0
	for i < len(lines) && lines[i] != header {
		i++
	}
	if i == len(lines) {
		t.Fatalf("no table header in:\n%s", text)
	}
	rows := 0
	for _, l := range lines[i+2:] {
		if !strings.HasPrefix(l, "|") {
			break
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if len(cells) != 7 {
			t.Errorf("row has %d cells: %s", len(cells), l)
			continue
		}
		for _, c := range cells[1:6] {
			c = strings.TrimSuffix(strings.TrimSpace(c), "×")
			if v, err := strconv.ParseFloat(c, 64); err != nil || !(v > 0) {
				t.Errorf("cell %q of row %s is not a number > 0", c, l)
			}
		}
		if tc := cells[6]; !strings.Contains(tc, "met") {
			t.Errorf("target cell %q says neither met nor NOT met", tc)
		}
		rows++
	}
	if rows != 5 {
		t.Errorf("table has %d rows, want 5", rows)
	}
}

func TestSplice(t *testing.T) {
	sec := sectionBegin + "\nnew\n" + sectionEnd + "\n"
	for _, c := range []struct{ doc, want string }{
		{"", "# Benchmarks\n\n" + sec},
		{"# B\n", "# B\n\n" + sec},
		{"# B\n\n" + sectionBegin + "\nold\n" + sectionEnd + "\n\n<!-- section: failback -->\nf\n<!-- /section -->\n",
			"# B\n\n" + sec + "\n<!-- section: failback -->\nf\n<!-- /section -->\n"},
		{"# B\n<!-- section: replication -->\nr\n<!-- /section -->\n" + sectionBegin + "\nold, no end\n<!-- section: failback -->\nf\n",
			"# B\n<!-- section: replication -->\nr\n<!-- /section -->\n" + sec + "<!-- section: failback -->\nf\n"},
	} {
		if got := splice(c.doc, sec); got != c.want {
			t.Errorf("splice(%q) =\n%q\nwant\n%q", c.doc, got, c.want)
		}
	}
}
