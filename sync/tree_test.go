package sync

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// treePair is a primary tree and a replica tree joined by a pipe.
type treePair struct {
	t        *testing.T
	src, dst string
	srcFD    int
	recv     *Receiver
	sendC    *Conn
	recvC    *Conn
	recvErr  chan error
}

func newTreePair(t *testing.T) *treePair {
	t.Helper()
	base := t.TempDir()
	p := &treePair{t: t, src: filepath.Join(base, "src"), dst: filepath.Join(base, "dst")}
	for _, d := range []string{p.src, p.dst} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if p.srcFD, err = unix.Open(p.src, unix.O_RDONLY|unix.O_DIRECTORY, 0); err != nil {
		t.Fatal(err)
	}
	dstFD, err := unix.Open(p.dst, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(base, "db")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	p.recv, err = NewReceiver(dstFD, db, base, nopSink{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p.srcFD); unix.Close(dstFD); db.Close() })
	return p
}

// sync runs one tree sync of roots from src to dst.
func (p *treePair) sync(roots ...string) {
	p.t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	sc, rc := NewConn(a, 0), NewConn(b, 0)
	done := make(chan error, 1)
	go func() {
		var tb TreeBegin
		if err := rc.Expect(TTree, &tb); err != nil {
			done <- err
			return
		}
		done <- p.recv.receiveTree(context.Background(), rc, &tb)
	}()
	s := &shipperless{root: p.srcFD, c: sc}
	if err := s.run(roots); err != nil {
		p.t.Fatalf("tree sync: %v (receiver: %v)", err, <-done)
	}
	if err := <-done; err != nil {
		p.t.Fatalf("receiver: %v", err)
	}
}

// shipperless drives a tree sync without a shipper.
type shipperless struct {
	root int
	c    *Conn
}

func (s *shipperless) run(roots []string) error {
	t := &treeSender{root: s.root, c: s.c, stats: &TreeProgress{}}
	if err := s.c.Send(TTree, &TreeBegin{Seq: 7}); err != nil {
		return err
	}
	for _, r := range normalizeRoots(roots) {
		if err := t.syncRoot(context.Background(), r); err != nil {
			return err
		}
	}
	if err := s.c.Send(TTreeEnd, &TreeEnd{Seq: 7, Final: true}); err != nil {
		return err
	}
	if err := s.c.Flush(); err != nil {
		return err
	}
	var ack Ack
	return s.c.Expect(TAck, &ack)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTreeSyncEntryKinds(t *testing.T) {
	p := newTreePair(t)
	must(t, os.MkdirAll(filepath.Join(p.src, "d/e"), 0o750))
	must(t, os.WriteFile(filepath.Join(p.src, "d/f"), []byte("hello"), 0o640))
	must(t, os.Symlink("../dangling", filepath.Join(p.src, "d/l")))
	must(t, unix.Mkfifo(filepath.Join(p.src, "fifo"), 0o644))
	must(t, os.Link(filepath.Join(p.src, "d/f"), filepath.Join(p.src, "hard")))
	must(t, os.WriteFile(filepath.Join(p.src, "a"), []byte("linked in one dir"), 0o640))
	must(t, os.Link(filepath.Join(p.src, "a"), filepath.Join(p.src, "b")))
	must(t, unix.Setxattr(filepath.Join(p.src, "d/f"), "user.k", []byte("v"), 0))
	// The replica has things to remove and to replace.
	must(t, os.MkdirAll(filepath.Join(p.dst, "extra/x"), 0o755))
	must(t, os.WriteFile(filepath.Join(p.dst, "fifo"), []byte("not a fifo"), 0o644))
	p.sync("")
	if d := compareDirs(t, p.src, p.dst); d != "" {
		t.Fatal(d)
	}
}

// compareDirs compares two trees by verify's rules.
func compareDirs(t *testing.T, a, b string) string {
	t.Helper()
	ma, mb := manifest(t, a), manifest(t, b)
	var out string
	for p, x := range ma {
		y, ok := mb[p]
		if !ok {
			out += p + ": missing\n"
			continue
		}
		for _, d := range compareItems(&x, &y) {
			out += d.Path + ": " + d.What + " " + d.Primary + " vs " + d.Replica + "\n"
		}
	}
	for p := range mb {
		if _, ok := ma[p]; !ok {
			out += p + ": extra\n"
		}
	}
	return out
}

func manifest(t *testing.T, dir string) map[string]Item {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd)
	out := map[string]Item{}
	must(t, walkManifest(context.Background(), fd, func(it *Item) error { out[it.Path] = *it; return nil }))
	return out
}
