package failover

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	gsync "github.com/georep/georep/sync"
)

// seedMessages are well-formed and hostile control frames.
func seedMessages() [][]byte {
	id := strings.Repeat("ab", 32)
	frame := func(v any) []byte {
		js, _ := json.Marshal(v)
		return gsync.AppendFrame(nil, gsync.TControl, js)
	}
	hist := History{{Epoch: 1, Primary: id}, {Epoch: 3, Start: 40, Primary: id}}
	return [][]byte{
		frame(&Message{Kind: kindCommit}),
		frame(&Message{Kind: kindPromote, Token: "00ff", Epoch: 3, Start: 40, History: hist}),
		frame(&Message{Kind: kindPromote, Token: "00ff", Epoch: 3, Start: 41, History: hist}),
		frame(&Message{Kind: kindPromote, Token: "../x", Epoch: 3, Start: 40, History: hist}),
		frame(&Message{Kind: kindPromoteReply, Error: "not caught up"}),
		frame(&Message{Kind: kindCommitDone, Freeze: 12345}),
		frame(&Message{Kind: kindResolve, Token: "abcdef"}),
		frame(&Message{Kind: kindResolved, Token: "abcdef", Outcome: outcomePromoted}),
		frame(&Message{Kind: kindView, Peer: &gsync.PeerStatus{Name: "a", State: gsync.StateInSync, AckedSeq: 9}}),
		frame(map[string]any{"kind": "promote", "token": "aa", "epoch": 2, "start": 1, "history": []map[string]any{{"epoch": 9, "primary": "x"}}}),
		frame(map[string]any{"kind": "rule", "freeze_ns": -1}),
		gsync.AppendFrame(nil, gsync.TControl, []byte("{not json")),
	}
}

// FuzzDecodeMessage feeds arbitrary frames to the control message decoder
// (what a peer's commit, resolve or query answer says): errors are fine,
// panics are not, and what it accepts is bounded and consistent.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range seedMessages() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := gsync.NewConn(&rwConn{r: bytes.NewReader(data)}, 0)
		for i := 0; i < 16; i++ {
			m, err := expect(c)
			if err != nil {
				return
			}
			if len(m.Token) > 64 || len(m.Error) > 4096 || m.Freeze < 0 {
				t.Fatalf("accepted an unbounded message: %+v", m)
			}
			if m.Kind == kindPromote {
				if len(m.History) == 0 {
					t.Fatalf("accepted a promote without a history: %+v", m)
				}
				last := m.History[len(m.History)-1]
				if last.Epoch != m.Epoch || last.Start != m.Start {
					t.Fatalf("accepted a promote whose history ends elsewhere: %+v", m)
				}
			}
		}
	})
}

func TestMessageCheck(t *testing.T) {
	for i, s := range seedMessages() {
		c := gsync.NewConn(&rwConn{r: bytes.NewReader(s)}, 0)
		_, err := expect(c)
		if ok := i == 0 || i == 1 || i >= 4 && i <= 8; ok != (err == nil) {
			t.Errorf("seed %d: err %v, want ok=%v", i, err, ok)
		}
	}
}

// rwConn is a net.Conn reading from r and discarding writes.
type rwConn struct{ r io.Reader }

func (c *rwConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *rwConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *rwConn) Close() error                     { return nil }
func (c *rwConn) LocalAddr() net.Addr              { return nil }
func (c *rwConn) RemoteAddr() net.Addr             { return nil }
func (c *rwConn) SetDeadline(time.Time) error      { return nil }
func (c *rwConn) SetReadDeadline(time.Time) error  { return nil }
func (c *rwConn) SetWriteDeadline(time.Time) error { return nil }
