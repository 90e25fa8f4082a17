package node

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Peer is a node this node trusts: its name, where it listens, and its
// node ID (the SHA-256 fingerprint of its certificate), which pins it.
type Peer struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	ID   string `json:"id"`
}

func peersPath(dir string) string { return filepath.Join(dir, "peers.json") }

// Peers lists the peers the node in dir trusts.
func Peers(dir string) ([]Peer, error) {
	b, err := os.ReadFile(peersPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read peers: %w", err)
	}
	var ps []Peer
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("read peers %s: %w", peersPath(dir), err)
	}
	return ps, nil
}

// ValidID checks that id is a node ID: 64 lowercase hex digits.
func ValidID(id string) error {
	if len(id) != 64 || strings.ToLower(id) != id {
		return fmt.Errorf("bad node ID %q: 64 lowercase hex digits (georep id prints it)", id)
	}
	if _, err := hex.DecodeString(id); err != nil {
		return fmt.Errorf("bad node ID %q: 64 lowercase hex digits (georep id prints it)", id)
	}
	return nil
}

func validAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("bad peer address %q: HOST:PORT", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("bad peer address %q: port 1 to 65535", addr)
	}
	return nil
}

// AddPeer makes the node in dir trust a peer. A name or ID already known
// is refused, as is the node's own ID.
func AddPeer(dir string, p Peer) error {
	self, err := Load(dir)
	if err != nil {
		return err
	}
	if err := validName(p.Name); err != nil {
		return fmt.Errorf("bad peer name %q: 1 to 64 characters, no '/'", p.Name)
	}
	if err := validAddr(p.Addr); err != nil {
		return err
	}
	if err := ValidID(p.ID); err != nil {
		return err
	}
	if p.ID == self.ID {
		return fmt.Errorf("%s is this node's own ID", p.ID)
	}
	ps, err := Peers(dir)
	if err != nil {
		return err
	}
	for _, q := range ps {
		switch {
		case q.Name == p.Name:
			return fmt.Errorf("a peer named %q is already trusted (%s at %s)", q.Name, q.ID, q.Addr)
		case q.ID == p.ID:
			return fmt.Errorf("node %s is already trusted as %q", q.ID, q.Name)
		}
	}
	ps = append(ps, p)
	js, err := json.MarshalIndent(ps, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(peersPath(dir), append(js, '\n'), 0o600)
}
