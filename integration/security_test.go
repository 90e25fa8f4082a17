package integration

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/journal"
	gsync "github.com/georep/georep/sync"
)

// Security tests against a real secondary daemon listening on 127.0.0.1.

// secondaryAlone starts a secondary that trusts one primary, which is
// not running: the test speaks for it (or for an impostor).
func secondaryAlone(t *testing.T) (sec *daemon, addr, primaryState string) {
	t.Helper()
	pState, _, _ := nodeDirs(t, "p")
	sState, sBacking, sMount := nodeDirs(t, "s")
	addr = freeAddr(t)
	pid := strings.TrimSpace(mustGeorep(t, "id", "--state", pState))
	sid := strings.TrimSpace(mustGeorep(t, "id", "--state", sState))
	mustGeorep(t, "peer", "add", "--state", sState, "p", freeAddr(t), pid)
	mustGeorep(t, "peer", "add", "--state", pState, "s", addr, sid)
	sec = startDaemon(t, sState, sBacking, sMount, "--listen", addr)
	return sec, addr, pState
}

// untouched checks the secondary's backing dir holds nothing but
// georep's own dir.
func untouched(t *testing.T, backing string) {
	t.Helper()
	ents, _ := os.ReadDir(backing)
	for _, e := range ents {
		if e.Name() != ".georep" {
			t.Errorf("something landed in the backing dir: %s", e.Name())
		}
	}
}

func dialAs(t *testing.T, addr, state, wantID string) (*tls.Conn, error) {
	t.Helper()
	cert, err := gsync.LoadCertificate(state)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(&d, "tcp", addr, gsync.ClientConfig(cert, wantID))
}

// sessionOK reports whether the server answered a Hello with a Welcome.
func sessionOK(c net.Conn) bool {
	fc := gsync.NewConn(c, 5*time.Second)
	fc.Send(gsync.THello, &gsync.Hello{Proto: gsync.Proto, Purpose: gsync.PurposeReplicate, Node: "x", Volume: "v",
		Claim: &gsync.Claim{Role: gsync.RolePrimary, Epoch: 1}})
	if fc.Flush() != nil {
		return false
	}
	var w gsync.Welcome
	return fc.Expect(gsync.TWelcome, &w) == nil
}

func TestSecurityUnknownCertificate(t *testing.T) {
	sec, addr, _ := secondaryAlone(t)
	mState, _, _ := nodeDirs(t, "mallory")
	sid := strings.TrimSpace(mustGeorep(t, "id", "--state", sec.state))
	c, err := dialAs(t, addr, mState, sid)
	if err == nil {
		ok := sessionOK(c)
		c.Close()
		if ok {
			t.Fatal("a node the secondary does not trust got a session")
		}
	}
	untouched(t, sec.backing)
}

func TestSecurityWrongID(t *testing.T) {
	// The secondary is not the node the client expects: the client
	// refuses it before sending anything.
	sec, addr, pState := secondaryAlone(t)
	_, err := dialAs(t, addr, pState, strings.Repeat("ab", 32))
	if err == nil {
		t.Fatal("the client accepted a server with another node ID")
	}
	// A primary whose peer entry has the wrong ID ships nothing.
	pBacking, pMount := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(pBacking, "secret"), []byte("x"), 0o644)
	mustGeorep(t, "peer", "add", "--state", pState, "wrong", addr, strings.Repeat("cd", 32))
	os.WriteFile(filepath.Join(pState, "peers.json"), []byte(`[{"name":"wrong","addr":"`+addr+`","id":"`+strings.Repeat("cd", 32)+`"}]`), 0o644)
	p := startDaemon(t, pState, pBacking, pMount, "--primary", "--listen", freeAddr(t))
	time.Sleep(time.Second)
	st := p.status()
	peer := st["peers"].([]any)[0].(map[string]any)
	if peer["state"] != "disconnected" || !strings.Contains(peer["error"].(string), "node ID") {
		t.Errorf("peer with the wrong ID: %v", peer)
	}
	untouched(t, sec.backing)
}

func TestSecurityPlainTCP(t *testing.T) {
	sec, addr, _ := secondaryAlone(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame := gsync.AppendFrame(nil, gsync.THello, []byte(`{"proto":2,"purpose":"replicate","node":"p","volume":"v","claim":{"role":"primary","epoch":1}}`))
	c.Write(frame)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	if n > 0 && buf[0] != 0x15 { // a TLS alert is all it may get
		t.Errorf("plain TCP got %d bytes back: %q", n, buf[:n])
	}
	untouched(t, sec.backing)
}

// hostile speaks for the trusted primary and sends what a compromised or
// buggy primary might; every attempt must be refused with nothing written
// outside the backing dir.
func TestSecurityHostileFrames(t *testing.T) {
	sec, addr, pState := secondaryAlone(t)
	sid := strings.TrimSpace(mustGeorep(t, "id", "--state", sec.state))
	pid := strings.TrimSpace(mustGeorep(t, "id", "--state", pState))
	// The claim of the primary the secondary trusts: it follows it.
	claim := &gsync.Claim{Name: "p", Role: gsync.RolePrimary, Epoch: 1, Primary: pid, Seq: 3,
		History: []gsync.EpochStart{{Epoch: 1, Primary: pid}}}
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("keep me"), 0o644)

	session := func(t *testing.T) *gsync.Conn {
		t.Helper()
		var tc *tls.Conn
		var err error
		for i := 0; i < 50; i++ { // the previous session may still be ending
			if tc, err = dialAs(t, addr, pState, sid); err == nil {
				c := gsync.NewConn(tc, 5*time.Second)
				c.Send(gsync.THello, &gsync.Hello{Proto: gsync.Proto, Purpose: gsync.PurposeReplicate, Node: "p", Volume: "vol", Claim: claim})
				c.Flush()
				var w gsync.Welcome
				if err = c.Expect(gsync.TWelcome, &w); err == nil {
					t.Cleanup(func() { c.Close() })
					return c
				}
				tc.Close()
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("no session: %v", err)
		return nil
	}
	// refused sends a batch and expects an error instead of an ack.
	refused := func(t *testing.T, recs ...journal.Record) {
		t.Helper()
		c := session(t)
		defer c.Close()
		c.Send(gsync.TBatch, &gsync.BatchBegin{First: 1, Last: 1})
		for i := range recs {
			recs[i].Seq = 1
			c.Send(gsync.TRecord, &recs[i])
		}
		c.Send(gsync.TBatchEnd, &gsync.BatchEnd{Seq: 1})
		c.Flush()
		var ack gsync.Ack
		err := c.Expect(gsync.TAck, &ack)
		if err == nil && ack.Error == "" {
			t.Errorf("records %+v were acknowledged", recs)
		}
	}
	mode := uint32(0o100644)
	for _, p := range []string{"../escape", "/etc/passwd-georep", "a/../../x", "nul\x00byte", ".georep/node", outside + "/x"} {
		t.Run("path "+strings.ReplaceAll(p, "/", "_"), func(t *testing.T) {
			refused(t, journal.Record{Op: journal.OpCreate, Path: p, Mode: &mode})
		})
	}
	t.Run("symlink escape", func(t *testing.T) {
		// A symlink is content and is replicated as such; nothing may
		// ever be resolved through it.
		c := session(t)
		c.Send(gsync.TBatch, &gsync.BatchBegin{First: 1, Last: 3})
		c.Send(gsync.TRecord, &journal.Record{Seq: 1, Op: journal.OpSymlink, Path: "esc", Target: outside})
		c.Send(gsync.TRecord, &journal.Record{Seq: 2, Op: journal.OpCreate, Path: "esc/pwned", Mode: &mode})
		c.Send(gsync.TRecord, &journal.Record{Seq: 3, Op: journal.OpTruncate, Path: "esc/victim", Size: new(uint64)})
		c.Send(gsync.TFile, &gsync.FileHeader{Path: "esc/victim"})
		c.SendData(0, []byte("owned"))
		c.Send(gsync.TFileEnd, &gsync.FileEnd{Size: 5})
		c.Send(gsync.TBatchEnd, &gsync.BatchEnd{Seq: 3, Fixups: []gsync.Fixup{{Path: "esc/victim", Mtime: 1}}})
		c.Flush()
		var ack gsync.Ack
		if err := c.Expect(gsync.TAck, &ack); err != nil {
			t.Fatalf("batch through a symlink: %v", err)
		}
		if len(ack.Repair) == 0 {
			t.Errorf("records through a symlink were not refused: %+v", ack)
		}
		c.Close()
		// And a tree sync into the link.
		c2 := session(t)
		c2.Send(gsync.TTree, &gsync.TreeBegin{Seq: 3})
		c2.Send(gsync.TDir, &gsync.Dir{Path: "esc", Self: &gsync.Entry{Mode: 0o40755}, Full: true})
		c2.Flush()
		var w gsync.Wants
		c2.Expect(gsync.TWants, &w)
		c2.Close()
		// The primary said esc is a directory: the replica replaced its
		// symlink by one, and followed nothing.
		if fi, err := os.Lstat(filepath.Join(sec.backing, "esc")); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			if ents, _ := os.ReadDir(outside); len(ents) != 1 {
				t.Errorf("tree sync through a symlink wrote outside: %v", ents)
			}
		}
	})
	t.Run("oversized frame", func(t *testing.T) {
		tc, _ := dialAs(t, addr, pState, sid)
		if tc == nil {
			return
		}
		defer tc.Close()
		var hdr [5]byte
		binary.BigEndian.PutUint32(hdr[:4], gsync.MaxFrame+1)
		hdr[4] = byte(gsync.THello)
		tc.Write(hdr[:])
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		fc := gsync.NewConn(tc, 5*time.Second)
		var w gsync.Welcome
		if err := fc.Expect(gsync.TWelcome, &w); err == nil {
			t.Error("an oversized frame was answered")
		}
	})
	t.Run("malformed frames", func(t *testing.T) {
		for _, bad := range [][]byte{
			gsync.AppendFrame(nil, gsync.TBatch, []byte("{not json")),
			gsync.AppendFrame(nil, gsync.FrameType(200)),
			gsync.AppendFrame(nil, gsync.TBatch, []byte(`{"first":9,"last":1}`)),
		} {
			c := session(t)
			c.Raw(bad)
			c.Flush()
			var ack gsync.Ack
			if err := c.Expect(gsync.TAck, &ack); err == nil && ack.Error == "" {
				t.Errorf("frame %q was acknowledged", bad)
			}
			c.Close()
		}
	})
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Errorf("a file outside the backing dir was changed: %q", b)
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 1 {
		t.Errorf("something was created outside the backing dir: %v", ents)
	}
	if _, err := os.Lstat("/etc/passwd-georep"); err == nil {
		t.Error("an absolute path was written")
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(sec.backing), "escape")); err == nil {
		t.Error("a .. path was written")
	}
	// The secondary is still up and answering.
	sec.status()
}
