package node

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAddPeer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	self, err := Init(dir, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	other := strings.Repeat("ab", 32)
	if err := AddPeer(dir, Peer{Name: "b", Addr: "127.0.0.1:7400", ID: other}); err != nil {
		t.Fatal(err)
	}
	ps, err := Peers(dir)
	if err != nil || len(ps) != 1 || ps[0].Name != "b" || ps[0].ID != other || ps[0].Addr != "127.0.0.1:7400" {
		t.Fatalf("peers %+v %v", ps, err)
	}
	for _, c := range []struct {
		p    Peer
		want string
	}{
		{Peer{Name: "b", Addr: "127.0.0.1:1", ID: strings.Repeat("cd", 32)}, "already trusted"},
		{Peer{Name: "c", Addr: "127.0.0.1:1", ID: other}, "already trusted"},
		{Peer{Name: "c", Addr: "127.0.0.1:1", ID: self.ID}, "own ID"},
		{Peer{Name: "c", Addr: "127.0.0.1:1", ID: "xyz"}, "bad node ID"},
		{Peer{Name: "c", Addr: "127.0.0.1:1", ID: strings.Repeat("AB", 32)}, "bad node ID"},
		{Peer{Name: "c", Addr: "nowhere", ID: strings.Repeat("cd", 32)}, "bad peer address"},
		{Peer{Name: "c", Addr: "h:99999", ID: strings.Repeat("cd", 32)}, "bad peer address"},
		{Peer{Name: "c/d", Addr: "h:1", ID: strings.Repeat("cd", 32)}, "bad peer name"},
	} {
		if err := AddPeer(dir, c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("AddPeer(%+v) = %v, want an error saying %q", c.p, err, c.want)
		}
	}
	if ps, _ := Peers(dir); len(ps) != 1 {
		t.Fatalf("refused peers were stored: %+v", ps)
	}
}
