// Package sync owns georep's replication link: the wire protocol, the
// shipping side on the primary and the applying side on secondaries
// (SPEC §4.7–14). Built so far: the mutually authenticated TLS every
// connection between nodes uses. Both sides present their node
// certificate; each pins the other by node ID (the certificate's SHA-256
// fingerprint) instead of trusting a certificate authority, and only TLS
// 1.3 is spoken. A connection from anyone else fails in the handshake,
// before a byte of data moves.
package sync

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"time"

	"github.com/georep/georep/node"
)

// LoadCertificate loads the node certificate and key of a state dir.
func LoadCertificate(stateDir string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(stateDir, "cert.pem"), filepath.Join(stateDir, "key.pem"))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load node certificate: %w", err)
	}
	return cert, nil
}

// Trust tells whether a node ID belongs to a trusted peer.
type Trust func(id string) (node.Peer, bool)

// TrustPeers trusts exactly the given peers.
func TrustPeers(peers []node.Peer) Trust {
	byID := make(map[string]node.Peer, len(peers))
	for _, p := range peers {
		byID[p.ID] = p
	}
	return func(id string) (node.Peer, bool) {
		p, ok := byID[id]
		return p, ok
	}
}

// ServerConfig accepts connections only from peers that trust admits.
func ServerConfig(cert tls.Certificate, trust Trust) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, err := pinnedID(raw)
			if err != nil {
				return err
			}
			if _, ok := trust(id); !ok {
				return fmt.Errorf("node %s is not a trusted peer (georep peer add)", id)
			}
			return nil
		},
	}
}

// ClientConfig connects only to the node whose ID is want.
func ClientConfig(cert tls.Certificate, want string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// Node certificates are self-signed: the peer is pinned by its
		// fingerprint below instead of being checked against a CA.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, err := pinnedID(raw)
			if err != nil {
				return err
			}
			if id != want {
				return fmt.Errorf("peer presented node ID %s, want %s", id, want)
			}
			return nil
		},
	}
}

// pinnedID is the node ID of the certificate a peer presented. The TLS
// handshake has proved the peer holds its key.
func pinnedID(raw [][]byte) (string, error) {
	if len(raw) == 0 {
		return "", fmt.Errorf("peer presented no certificate")
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return "", fmt.Errorf("peer certificate: %w", err)
	}
	if now := time.Now(); now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return "", fmt.Errorf("peer certificate is not valid now (%s to %s)", cert.NotBefore, cert.NotAfter)
	}
	return node.Fingerprint(raw[0]), nil
}

// PeerID is the node ID of the other side of an established connection.
func PeerID(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return node.Fingerprint(cs.PeerCertificates[0].Raw)
}
