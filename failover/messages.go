package failover

import (
	"fmt"
	"strings"

	gsync "github.com/georep/georep/sync"
)

// Message is a failover control message (a TControl frame). Kind says
// which fields it uses:
//
//	view           server → querier: Peer, its replication state of the querier
//	commit         new primary → current primary: hand the role over
//	promote        current primary → new primary: Token, Epoch, Start, History
//	promote-reply  new primary → current primary: Error ("" = promoted)
//	commit-done    current primary → new primary: Freeze, or Error (rolled back)
//	resolve        old primary → new primary: Token (what became of it?)
//	resolved       new primary → old primary: Outcome (promoted or aborted)
//
// Every field comes from a peer: check bounds it before anything reads it.
type Message struct {
	Kind    string            `json:"kind"`
	Token   string            `json:"token,omitempty"`
	Epoch   uint64            `json:"epoch,omitempty"`
	Start   uint64            `json:"start,omitempty"`
	History History           `json:"history,omitempty"`
	Peer    *gsync.PeerStatus `json:"peer,omitempty"`
	Freeze  int64             `json:"freeze_ns,omitempty"`
	Outcome string            `json:"outcome,omitempty"`
	Error   string            `json:"error,omitempty"`
}

// Message kinds and resolve outcomes.
const (
	kindView         = "view"
	kindCommit       = "commit"
	kindPromote      = "promote"
	kindPromoteReply = "promote-reply"
	kindCommitDone   = "commit-done"
	kindResolve      = "resolve"
	kindResolved     = "resolved"

	outcomePromoted = "promoted"
	outcomeAborted  = "aborted"
)

// Check bounds a message from a peer (sync.DecodeJSON calls it).
func (m *Message) Check() error {
	switch m.Kind {
	case kindView, kindCommit, kindPromote, kindPromoteReply, kindCommitDone, kindResolve, kindResolved:
	default:
		return fmt.Errorf("unknown control message %q", m.Kind)
	}
	if len(m.Token) > 64 || strings.ContainsFunc(m.Token, func(r rune) bool { return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') }) {
		return fmt.Errorf("bad commit token %q", m.Token)
	}
	if (m.Kind == kindPromote || m.Kind == kindResolve) && m.Token == "" {
		return fmt.Errorf("%s without a token", m.Kind)
	}
	if len(m.Error) > 4096 {
		return fmt.Errorf("over-long error")
	}
	if m.Outcome != "" && m.Outcome != outcomePromoted && m.Outcome != outcomeAborted {
		return fmt.Errorf("unknown outcome %q", m.Outcome)
	}
	if m.Freeze < 0 {
		return fmt.Errorf("negative freeze time")
	}
	if m.Kind == kindPromote {
		// The history is the new primary's from now on: it must be a
		// well-formed claim's, ending with the new epoch.
		c := gsync.Claim{Role: gsync.RolePrimary, Epoch: m.Epoch, History: m.History}
		if err := gsync.CheckClaim(&c); err != nil {
			return err
		}
		if len(m.History) == 0 {
			return fmt.Errorf("promote without a history")
		}
		if last := m.History[len(m.History)-1]; last.Epoch != m.Epoch || last.Start != m.Start {
			return fmt.Errorf("promote to epoch %d at %d with a history ending at epoch %d at %d", m.Epoch, m.Start, last.Epoch, last.Start)
		}
	}
	if p := m.Peer; p != nil && (len(p.Name) > 64 || len(p.Addr) > 300 || len(p.State) > 32 || len(p.Error) > 4096) {
		return fmt.Errorf("over-long peer view")
	}
	return nil
}

// send writes m as a control frame and flushes it.
func send(c *gsync.Conn, m *Message) error {
	if err := c.Send(gsync.TControl, m); err != nil {
		return err
	}
	return c.Flush()
}

// expect reads a control message (an error frame from the peer becomes
// an error).
func expect(c *gsync.Conn) (*Message, error) {
	var m Message
	if err := c.Expect(gsync.TControl, &m); err != nil {
		return nil, err
	}
	return &m, nil
}
