package failover

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/georep/georep/node"
	gsync "github.com/georep/georep/sync"
)

// NodeStatus is one node of the cluster as this node sees it: its own
// claim, or what a peer answered (or why it did not).
type NodeStatus struct {
	Name      string `json:"name"`
	ID        string `json:"id"`
	Addr      string `json:"addr,omitempty"`
	Self      bool   `json:"self,omitempty"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	Role      string `json:"role,omitempty"`
	Epoch     uint64 `json:"epoch,omitempty"`
	Primary   string `json:"primary,omitempty"` // name of the primary it knows
	// Seq is where its data stands (a secondary's cursor, a primary's
	// journal), in History.
	Seq     uint64  `json:"seq"`
	History History `json:"history,omitempty"`
	// View is the node's replication state of this node, when it is this
	// node's primary.
	View *gsync.PeerStatus `json:"-"`
}

// queryWait bounds a query of one peer.
const queryWait = 2 * time.Second

// query asks peer for its claim and its view of this node.
func (c *Controller) query(ctx context.Context, p node.Peer) NodeStatus {
	ns := NodeStatus{Name: p.Name, ID: p.ID, Addr: p.Addr}
	qctx, cancel := context.WithTimeout(ctx, queryWait)
	defer cancel()
	conn, w, err := c.eng.Dial(qctx, p, gsync.PurposeQuery)
	if w != nil && w.Claim != nil {
		c.fillClaim(&ns, w.Claim)
	}
	if err != nil {
		ns.Error = err.Error()
		return ns
	}
	defer conn.Close()
	stop := context.AfterFunc(qctx, func() { conn.Close() })
	defer stop()
	m, err := expect(conn)
	if err != nil {
		ns.Error = err.Error()
		return ns
	}
	ns.View = m.Peer
	return ns
}

func (c *Controller) fillClaim(ns *NodeStatus, cl *gsync.Claim) {
	ns.Reachable = true
	ns.Role, ns.Epoch, ns.Seq, ns.History = cl.Role, cl.Epoch, cl.Seq, cl.History
	ns.Primary = c.peerName(cl.Primary)
}

// queryPeers asks every trusted peer at once.
func (c *Controller) queryPeers(ctx context.Context) []NodeStatus {
	peers, err := c.eng.TrustedPeers()
	if err != nil {
		c.log.Error("read peers", "err", err)
		return nil
	}
	out := make([]NodeStatus, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = c.query(ctx, p) }()
	}
	wg.Wait()
	return out
}

// Nodes is every node of the cluster side by side: this one, then each
// peer as it answers now, so an operator sees at a glance who is primary
// and that no replica is ahead of it.
func (c *Controller) Nodes(ctx context.Context) []NodeStatus {
	self := NodeStatus{Name: c.o.Self.Name, ID: c.o.Self.ID, Self: true}
	cl := c.Claim()
	c.fillClaim(&self, &cl)
	out := append([]NodeStatus{self}, c.queryPeers(ctx)...)
	slices.SortStableFunc(out[1:], func(a, b NodeStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// serveQuery answers a query: the Welcome carried this node's claim; the
// view is its replication state of the asking node, if it ships to it.
func (c *Controller) serveQuery(ctx context.Context, peer node.Peer, conn *gsync.Conn, h *gsync.Hello) error {
	return send(conn, &Message{Kind: kindView, Peer: c.eng.PeerStatus(ctx, peer.ID)})
}

// serveKick makes the shipper of the asking peer ship at once (a
// failback start does not wait for a reconnect backoff).
func (c *Controller) serveKick(ctx context.Context, peer node.Peer, conn *gsync.Conn, h *gsync.Hello) error {
	c.eng.Kick(peer.ID)
	return nil
}

// kick asks peer to ship to this node now (best effort).
func (c *Controller) kick(ctx context.Context, p node.Peer) {
	kctx, cancel := context.WithTimeout(ctx, queryWait)
	defer cancel()
	if conn, _, err := c.eng.Dial(kctx, p, gsync.PurposeKick); err == nil {
		conn.Close()
	}
}
