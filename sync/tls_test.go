package sync

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/georep/georep/node"
)

type testNode struct {
	id   string
	cert tls.Certificate
}

func newTestNode(t *testing.T, name string) testNode {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	id, err := node.Init(dir, name, "")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := LoadCertificate(dir)
	if err != nil {
		t.Fatal(err)
	}
	return testNode{id: id.ID, cert: cert}
}

// echoServer accepts on 127.0.0.1 with cfg. Every connection that passes
// the handshake has one line echoed; handshake failures and the lines the
// server received go to the returned channels.
func echoServer(t *testing.T, cfg *tls.Config) (addr string, peers <-chan string, failures <-chan error, lines <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pc, fc, lc := make(chan string, 8), make(chan error, 8), make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				tc := tls.Server(c, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := tc.HandshakeContext(ctx); err != nil {
					fc <- err
					return
				}
				pc <- PeerID(tc.ConnectionState())
				line, err := bufio.NewReader(tc).ReadString('\n')
				if err != nil {
					return
				}
				lc <- line
				tc.Write([]byte(line))
			}(c)
		}
	}()
	return ln.Addr().String(), pc, fc, lc
}

func dial(addr string, cfg *tls.Config) (string, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestMutualTLSTrustedPeers(t *testing.T) {
	a, b := newTestNode(t, "a"), newTestNode(t, "b")
	addr, peers, failures, _ := echoServer(t, ServerConfig(a.cert, TrustPeers([]node.Peer{{Name: "b", ID: b.id}})))
	got, err := dial(addr, ClientConfig(b.cert, a.id))
	if err != nil {
		t.Fatalf("trusted peer: %v", err)
	}
	if got != "hello\n" {
		t.Fatalf("echo %q", got)
	}
	select {
	case id := <-peers:
		if id != b.id {
			t.Fatalf("server saw peer %s, want %s", id, b.id)
		}
	case err := <-failures:
		t.Fatal(err)
	}
}

// refused checks that a connection attempt failed and that the server
// received no data from it.
func refused(t *testing.T, err error, failures <-chan error, lines <-chan string, want string) {
	t.Helper()
	if err == nil {
		t.Fatal("connection succeeded")
	}
	select {
	case ferr := <-failures:
		if want != "" && !strings.Contains(ferr.Error(), want) {
			t.Errorf("server refused with %q, want it to say %q", ferr, want)
		}
	case <-time.After(5 * time.Second):
		t.Error("server did not report a failed handshake")
	}
	select {
	case l := <-lines:
		t.Errorf("server received data %q from a refused peer", l)
	default:
	}
}

func TestUnknownCertificateRefused(t *testing.T) {
	a, b, stranger := newTestNode(t, "a"), newTestNode(t, "b"), newTestNode(t, "stranger")
	addr, _, failures, lines := echoServer(t, ServerConfig(a.cert, TrustPeers([]node.Peer{{Name: "b", ID: b.id}})))
	_, err := dial(addr, ClientConfig(stranger.cert, a.id))
	refused(t, err, failures, lines, "not a trusted peer")
}

func TestWrongIDRefused(t *testing.T) {
	a, b, other := newTestNode(t, "a"), newTestNode(t, "b"), newTestNode(t, "other")
	addr, _, failures, lines := echoServer(t, ServerConfig(a.cert, TrustPeers([]node.Peer{{Name: "b", ID: b.id}})))
	// b expects to reach "other" but a answers: b must not talk to it.
	_, err := dial(addr, ClientConfig(b.cert, other.id))
	if err == nil || !strings.Contains(err.Error(), "want "+other.id) {
		t.Fatalf("client reached the wrong node: %v", err)
	}
	refused(t, err, failures, lines, "")
}

func TestNoClientCertificateRefused(t *testing.T) {
	a, b := newTestNode(t, "a"), newTestNode(t, "b")
	addr, _, failures, lines := echoServer(t, ServerConfig(a.cert, TrustPeers([]node.Peer{{Name: "b", ID: b.id}})))
	cfg := ClientConfig(b.cert, a.id)
	cfg.Certificates = nil
	_, err := dial(addr, cfg)
	refused(t, err, failures, lines, "")
}

func TestPlainTCPRefused(t *testing.T) {
	a, b := newTestNode(t, "a"), newTestNode(t, "b")
	addr, _, failures, lines := echoServer(t, ServerConfig(a.cert, TrustPeers([]node.Peer{{Name: "b", ID: b.id}})))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("PUT /etc/passwd\nhello\n"))
	buf := make([]byte, 64)
	n, rerr := c.Read(buf)
	if rerr == nil && strings.Contains(string(buf[:n]), "hello") {
		t.Fatalf("plain TCP got an echo: %q", buf[:n])
	}
	refused(t, errors.New("plain"), failures, lines, "")
}

func TestTLS12Refused(t *testing.T) {
	a, b := newTestNode(t, "a"), newTestNode(t, "b")
	addr, _, failures, lines := echoServer(t, ServerConfig(a.cert, TrustPeers([]node.Peer{{Name: "b", ID: b.id}})))
	cfg := ClientConfig(b.cert, a.id)
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	_, err := dial(addr, cfg)
	refused(t, err, failures, lines, "")
}
