// Package node owns a node's state dir: its identity (key, self-signed
// certificate, node ID), the lock that keeps one daemon per state dir, the
// badger database, and the journal and index opened over it.
//
// Layout of a state dir:
//
//	node.json      name, node ID, listen address
//	peers.json     the peers this node trusts: name, address, node ID
//	key.pem        private key (0600)
//	cert.pem       self-signed certificate; the node ID is its SHA-256
//	LOCK           flock(2)ed by the process that has the node open
//	db/            badger: journal records, index, metadata
//	journal/wal    the journal's write-ahead log
//	daemon.sock    the running daemon's control socket
package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/georep/georep/index"
	"github.com/georep/georep/journal"
)

// Identity is what node.json holds.
type Identity struct {
	Name    string    `json:"name"`
	ID      string    `json:"id"`
	Listen  string    `json:"listen,omitempty"`
	Created time.Time `json:"created"`
}

// ErrNotInitialized is returned for a state dir without an identity.
var ErrNotInitialized = errors.New("state dir is not initialized (run georep init)")

// Init creates a node identity in dir.
func Init(dir, name, listen string) (*Identity, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if id, err := Load(dir); err == nil {
		return nil, fmt.Errorf("state dir %s already holds node %q (%s)", dir, id.Name, id.ID)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	now := time.Now().UTC()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"georep"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(100, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	if err := writeFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	id := &Identity{Name: name, ID: Fingerprint(der), Listen: listen, Created: now}
	js, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, "node.json"), append(js, '\n'), 0o644); err != nil {
		return nil, err
	}
	return id, nil
}

func validName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || len(name) > 64 {
		return fmt.Errorf("bad node name %q: 1 to 64 characters, no '/'", name)
	}
	return nil
}

// Fingerprint is the node ID of a certificate: hex SHA-256 of its DER.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}

// Load reads the identity of the node in dir and checks it against its
// certificate.
func Load(dir string) (*Identity, error) {
	js, err := os.ReadFile(filepath.Join(dir, "node.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotInitialized)
	}
	if err != nil {
		return nil, fmt.Errorf("read node identity: %w", err)
	}
	var id Identity
	if err := json.Unmarshal(js, &id); err != nil {
		return nil, fmt.Errorf("read node identity %s: %w", filepath.Join(dir, "node.json"), err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		return nil, fmt.Errorf("read node certificate: %w", err)
	}
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("node certificate %s is not PEM", filepath.Join(dir, "cert.pem"))
	}
	if got := Fingerprint(b.Bytes); got != id.ID {
		return nil, fmt.Errorf("node certificate fingerprint %s does not match node ID %s", got, id.ID)
	}
	return &id, nil
}

// Node is an open state dir.
type Node struct {
	Dir      string
	Identity *Identity
	DB       *badger.DB
	Journal  *journal.Journal
	Index    *index.Index
	lock     *os.File
}

// Open locks the state dir and opens its database, journal and index,
// recovering the journal if the last daemon did not stop cleanly.
func Open(dir string, log *slog.Logger) (*Node, error) {
	id, err := Load(dir)
	if err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	n := &Node{Dir: dir, Identity: id, lock: lock}
	bo := badger.DefaultOptions(filepath.Join(dir, "db")).
		WithLogger(nil).
		WithMemTableSize(16 << 20).
		WithValueThreshold(1 << 10).
		WithNumVersionsToKeep(1).
		WithCompactL0OnClose(true).
		// One writer (the journal's flusher) and few reads: no conflict
		// detection, few compactors, small caches, so badger's
		// background work competes little with the mount for the CPU.
		WithDetectConflicts(false).
		WithNumCompactors(2).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(8 << 20).
		WithMetricsEnabled(false)
	if n.DB, err = badger.Open(bo); err != nil {
		n.Close()
		return nil, fmt.Errorf("open journal database %s: %s", filepath.Join(dir, "db"), firstLine(err))
	}
	n.Index = index.New(n.DB)
	n.Journal, err = journal.Open(journal.Options{
		Dir:          filepath.Join(dir, "journal"),
		DB:           n.DB,
		Persist:      n.Index.Apply,
		OpenSessions: n.Index.OpenSessions,
		Trim:         n.Index.Trim,
		Logger:       log,
	})
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("open journal: %s", firstLine(err))
	}
	return n, nil
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open state lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(f.Name())
		f.Close()
		return nil, fmt.Errorf("state dir %s is in use by another georep process (pid %s)", dir, strings.TrimSpace(string(pid)))
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}

// Close closes the journal and database and releases the lock.
func (n *Node) Close() error {
	var errs []error
	if n.Journal != nil {
		errs = append(errs, n.Journal.Close())
	}
	if n.DB != nil {
		errs = append(errs, n.DB.Close())
	}
	if n.lock != nil {
		n.lock.Close()
	}
	return errors.Join(errs...)
}

// SocketPath is the daemon's control socket.
func SocketPath(dir string) string { return filepath.Join(dir, "daemon.sock") }

// markerName is the file in the backing dir's hidden dir that names the
// node serving it.
const markerName = "node"

// ClaimBacking binds the backing dir (reached through root, e.g.
// /proc/self/fd/N) to this node: a backing dir claimed by another node is
// refused, so two state dirs never journal the same tree.
func (n *Node) ClaimBacking(root, hidden string) error {
	dir := filepath.Join(root, hidden)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s in backing dir: %w", hidden, err)
	}
	marker := filepath.Join(dir, markerName)
	got, err := os.ReadFile(marker)
	switch {
	case err == nil:
		owner := strings.TrimSpace(string(got))
		if owner != n.Identity.ID {
			return fmt.Errorf("backing dir belongs to node %s, not to this state dir's node %s (%s): wrong --state?", owner, n.Identity.Name, n.Identity.ID)
		}
		return nil
	case errors.Is(err, os.ErrNotExist):
		return writeFile(marker, []byte(n.Identity.ID+"\n"), 0o600)
	default:
		return fmt.Errorf("read backing dir marker: %w", err)
	}
}
