package sync

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/georep/georep/journal"
)

func TestCheckRecordRefusesHostileRecords(t *testing.T) {
	mode := uint32(0o100644)
	dev := uint32(0o040755)
	big := uint64(1 << 63)
	for name, r := range map[string]journal.Record{
		"dotdot":           {Op: journal.OpCreate, Path: "a/../b"},
		"absolute":         {Op: journal.OpCreate, Path: "/etc/x"},
		"nul":              {Op: journal.OpCreate, Path: "a\x00b"},
		"own dir":          {Op: journal.OpUnlink, Path: ".georep/node"},
		"rename into own":  {Op: journal.OpRename, Path: "a", NewPath: ".georep/x"},
		"root unlink":      {Op: journal.OpRmdir, Path: ""},
		"rename no target": {Op: journal.OpRename, Path: "a"},
		"unlink with new":  {Op: journal.OpUnlink, Path: "a", NewPath: "b"},
		"resync own dir":   {Op: journal.OpResync, Path: ".georep"},
		"resync dotdot":    {Op: journal.OpResync, Path: ".."},
		"unknown op":       {Op: "chmod", Path: "a"},
		"rename flags":     {Op: journal.OpRename, Path: "a", NewPath: "b", Flags: 1 << 2},
		"collapse":         {Op: journal.OpFallocate, Path: "a", Flags: 0x08},
		"negative range":   {Op: journal.OpWrite, Path: "a", Ranges: []journal.Range{{-1, 5}}},
		"overflow range":   {Op: journal.OpWrite, Path: "a", Ranges: []journal.Range{{1 << 62, 1 << 62}}},
		"huge size":        {Op: journal.OpTruncate, Path: "a", Size: &big},
		"mknod dir":        {Op: journal.OpMknod, Path: "a", Mode: &dev},
		"empty symlink":    {Op: journal.OpSymlink, Path: "a"},
		"xattr nul":        {Op: journal.OpSetxattr, Path: "a", Xattr: "user.\x00"},
	} {
		if err := checkRecord(&r); err == nil {
			t.Errorf("%s: %+v accepted", name, r)
		}
	}
	ok := journal.Record{Op: journal.OpCreate, Path: "d/f", Mode: &mode}
	if err := checkRecord(&ok); err != nil {
		t.Errorf("a plain create refused: %v", err)
	}
	// A primary ships resync records (paths its history cannot vouch
	// for), the volume root included.
	for _, p := range []string{"d/f", ""} {
		if err := checkRecord(&journal.Record{Op: journal.OpResync, Path: p}); err != nil {
			t.Errorf("resync of %q refused: %v", p, err)
		}
	}
}

func TestClaimCheck(t *testing.T) {
	a, b := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	good := Claim{Name: "n", Role: RoleSecondary, Epoch: 3, Primary: b, Seq: 9,
		History: []EpochStart{{Epoch: 1, Primary: a}, {Epoch: 3, Start: 9, Primary: b}}}
	if err := good.check(); err != nil {
		t.Fatalf("a good claim refused: %v", err)
	}
	for name, mutate := range map[string]func(*Claim){
		"unknown role":       func(c *Claim) { c.Role = "king" },
		"short primary":      func(c *Claim) { c.Primary = "ab" },
		"upper-case primary": func(c *Claim) { c.Primary = strings.ToUpper(b) },
		"history primary":    func(c *Claim) { c.History[0].Primary = "" },
		"epochs out of order": func(c *Claim) {
			c.History = []EpochStart{{Epoch: 3, Primary: a}, {Epoch: 1, Start: 9, Primary: b}}
		},
		"starts out of order": func(c *Claim) {
			c.History = []EpochStart{{Epoch: 1, Start: 9, Primary: a}, {Epoch: 3, Start: 2, Primary: b}}
		},
		"history past the epoch": func(c *Claim) { c.Epoch = 2 },
		"long name":              func(c *Claim) { c.Name = strings.Repeat("x", 65) },
		"huge epoch":             func(c *Claim) { c.Epoch = 1<<64 - 1 },
	} {
		c := good
		c.History = slices.Clone(good.History)
		mutate(&c)
		if err := c.check(); err == nil {
			t.Errorf("%s: %+v accepted", name, c)
		}
	}
	if err := (&Hello{Proto: Proto, Purpose: PurposeQuery, Node: "n"}).check(); err == nil {
		t.Error("a hello without a claim accepted")
	}
	if err := (&Hello{Proto: Proto, Purpose: "rule", Node: "n", Claim: &good}).check(); err == nil {
		t.Error("a hello with an unknown purpose accepted")
	}
}

func TestReadFrameLimits(t *testing.T) {
	for name, b := range map[string][]byte{
		"oversized": {0x00, 0x40, 0x00, 0x01, byte(THello)},
		"zero":      {0, 0, 0, 0, byte(THello)},
		"type 0":    {0, 0, 0, 1, 0},
		"type 255":  {0, 0, 0, 1, 255},
	} {
		if _, _, err := ReadFrame(bytes.NewReader(b), nil); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want a protocol error", name, err)
		}
	}
	f, _, err := ReadFrame(bytes.NewReader(AppendFrame(nil, TPing, []byte("{}"))), nil)
	if err != nil || f.Type != TPing || string(f.Payload) != "{}" {
		t.Errorf("ping frame: %v %+v", err, f)
	}
}

func TestComparePathsIsWalkOrder(t *testing.T) {
	walk := []string{"a", "a/b", "a/b/c", "a/z", "a-b", "a.b", "b"}
	// Byte order would put "a-b" and "a.b" before "a/b"; the walk does not.
	got := slices.Clone(walk)
	slices.Reverse(got)
	slices.SortFunc(got, comparePaths)
	if !slices.Equal(got, walk) {
		t.Errorf("walk order %v, want %v", got, walk)
	}
}

func TestFixupsFollowRenames(t *testing.T) {
	f := newFixups()
	f.add(&journal.Record{Op: journal.OpWrite, Path: "d/sub/f"})
	f.add(&journal.Record{Op: journal.OpRename, Path: "d", NewPath: "e"})
	var got []string
	for p := range f.paths {
		got = append(got, p)
	}
	slices.Sort(got)
	want := []string{"", "d", "e", "e/sub", "e/sub/f"}
	if !slices.Equal(got, want) {
		t.Errorf("fixup paths %v, want %v", got, want)
	}
}

func TestNormalizeRoots(t *testing.T) {
	got := normalizeRoots([]string{"a/b", "a", "c/d", "c/dd", "a/b/c"})
	if want := []string{"a", "c/d", "c/dd"}; !slices.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
	if got := normalizeRoots([]string{"x", ""}); !slices.Equal(got, []string{""}) {
		t.Errorf("%v, want the root alone", got)
	}
}

func TestPathSetFollowsRenames(t *testing.T) {
	s := NewPathSet("d/x", "e", "keep")
	s.Move("d", "moved", false)
	s.Add("d/new")
	s.Move("e", "f", true) // exchange: f's contents are at e now
	s.Add("f/y")
	s.Move("f", "g", false)
	if got, want := s.List(), []string{"moved/x", "g", "keep", "d/new", "g/y"}; !slices.Equal(got, want) {
		t.Errorf("after renames: %v, want %v", got, want)
	}
	// A rename that moves two paths onto one keeps one.
	s = NewPathSet("a", "b/a")
	s.Move("b/a", "a", false)
	if got := s.List(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("merged paths: %v", got)
	}
}
