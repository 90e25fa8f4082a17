package integration

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Crash tests of replication. A writer on the primary overwrites a set of
// files, each in one write of a uniform pattern (the file's generation
// number, repeated), and keeps a ledger of the generations acknowledged
// to it; a reader on each secondary's mount checks that every file it
// reads holds one generation only: a torn file would show two.

const (
	crashFiles    = 48
	crashFileSize = 64 << 10
)

type genWriter struct {
	root   string
	mu     sync.Mutex
	ledger map[int]uint64 // file -> last generation acknowledged
	gen    uint64
	stop   chan struct{}
	done   chan struct{}
	writes atomic.Int64
}

func startGenWriter(root string) *genWriter {
	w := &genWriter{root: root, ledger: map[int]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func genPattern(gen uint64) []byte {
	b := make([]byte, crashFileSize)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], gen)
	}
	return b
}

func (w *genWriter) run() {
	defer close(w.done)
	rng := rand.New(rand.NewPCG(7, 8))
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		i := rng.IntN(crashFiles)
		w.gen++
		f, err := os.OpenFile(filepath.Join(w.root, fmt.Sprintf("f%02d", i)), os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			time.Sleep(20 * time.Millisecond) // the primary is down
			continue
		}
		_, err = f.WriteAt(genPattern(w.gen), 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			w.mu.Lock()
			w.ledger[i] = w.gen
			w.mu.Unlock()
			w.writes.Add(1)
		}
		time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
	}
}

func (w *genWriter) finish() {
	close(w.stop)
	<-w.done
}

// checkLedger: every acknowledged generation is on the primary (or a
// later one).
func (w *genWriter) checkLedger(t *testing.T, root string) {
	t.Helper()
	for i, gen := range w.ledger {
		b, err := os.ReadFile(filepath.Join(root, fmt.Sprintf("f%02d", i)))
		if err != nil {
			t.Errorf("f%02d: %v (generation %d was acknowledged)", i, err, gen)
			continue
		}
		if got, ok := uniform(b); !ok || got < gen {
			t.Errorf("f%02d holds generation %d (uniform %v); %d was acknowledged", i, got, ok, gen)
		}
	}
}

// uniform returns the generation a file holds, false if it holds two.
func uniform(b []byte) (uint64, bool) {
	if len(b) < 8 {
		return 0, len(b) == 0
	}
	g := binary.LittleEndian.Uint64(b)
	for i := 8; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != g {
			return g, false
		}
	}
	return g, len(b)%8 == 0
}

// tornReader reads the secondary's files through its mount until
// stopped, counting the reads and the torn files seen.
type tornReader struct {
	stop        chan struct{}
	done        chan struct{}
	reads, torn atomic.Int64
	example     atomic.Value
}

func startTornReader(root string) *tornReader {
	r := &tornReader{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		rng := rand.New(rand.NewPCG(9, 10))
		for {
			select {
			case <-r.stop:
				return
			default:
			}
			b, err := os.ReadFile(filepath.Join(root, fmt.Sprintf("f%02d", rng.IntN(crashFiles))))
			if err != nil {
				time.Sleep(5 * time.Millisecond) // not there yet, or the secondary is down
				continue
			}
			r.reads.Add(1)
			if _, ok := uniform(b); !ok {
				r.torn.Add(1)
				r.example.Store(fmt.Sprintf("%d bytes", len(b)))
			}
		}
	}()
	return r
}

func (r *tornReader) finish(t *testing.T) {
	t.Helper()
	close(r.stop)
	<-r.done
	if n := r.torn.Load(); n > 0 {
		t.Errorf("a reader on the secondary saw %d torn files (of %d reads), e.g. %v", n, r.reads.Load(), r.example.Load())
	}
	t.Logf("reader on the secondary: %d reads, none torn", r.reads.Load())
}

func staged(d *daemon) bool {
	_, err := os.Stat(filepath.Join(d.state, "staging", "batch"))
	return err == nil
}

// TestCrashSecondaryDuringApply kills the secondary with SIGKILL again
// and again while batches arrive; each restart redoes the staged batch.
func TestCrashSecondaryDuringApply(t *testing.T) {
	c := newCluster(t, 1)
	w := startGenWriter(c.primary.mount)
	time.Sleep(300 * time.Millisecond)
	r := startTornReader(c.second[0].mount)
	s := c.second[0]
	// Crash points inside a batch: the daemon kills itself (SIGKILL)
	// after applying that many records.
	for _, n := range []int{1, 7, 40} {
		s.stop()
		s.env = []string{fmt.Sprintf("GEOREP_TEST_CRASH_AFTER_RECORDS=%d", n)}
		s.mayCrash = true
		s.start()
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("crash point %d never reached", n)
		}
		if !staged(s) {
			t.Fatalf("crash after %d records left no staged batch", n)
		}
		s.env, s.mayCrash = nil, false
		s.restart()
		if !strings.Contains(s.log.String(), "redoing the staged batch") {
			t.Errorf("restart after crash point %d did not redo the staged batch:\n%s", n, s.log.String())
		}
	}
	// And SIGKILL from outside at random times.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5; i++ {
		time.Sleep(time.Duration(150+rng.IntN(400)) * time.Millisecond)
		s.kill()
		s.restart()
	}
	w.finish()
	c.converged()
	r.finish(t)
	w.checkLedger(t, c.primary.backing)
	t.Logf("%d writes", w.writes.Load())
}

// TestCrashPrimaryDuringShipping kills the primary with SIGKILL while it
// ships; it restarts, recovers its journal and resumes from the cursor.
func TestCrashPrimaryDuringShipping(t *testing.T) {
	c := newCluster(t, 1)
	w := startGenWriter(c.primary.mount)
	r := startTornReader(c.second[0].mount)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 5; i++ {
		time.Sleep(time.Duration(300+rng.IntN(500)) * time.Millisecond)
		c.primary.kill()
		c.primary.restart()
	}
	time.Sleep(300 * time.Millisecond)
	w.finish()
	c.converged()
	r.finish(t)
	w.checkLedger(t, c.primary.backing)
	w.checkLedger(t, c.second[0].backing)
	t.Logf("%d writes acknowledged", w.writes.Load())
}

// cutProxy forwards TCP to a target and cuts every connection after a
// random number of bytes.
type cutProxy struct {
	ln    net.Listener
	cuts  atomic.Int64
	wg    sync.WaitGroup
	limit func() int64
}

func newCutProxy(t *testing.T, target string, limit func() int64) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, limit: limit}
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go p.forward(in, target)
		}
	}()
	return p
}

func (p *cutProxy) forward(in net.Conn, target string) {
	defer p.wg.Done()
	defer in.Close()
	out, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer out.Close()
	limit := p.limit()
	done := make(chan struct{}, 2)
	go func() { io.Copy(in, out); done <- struct{}{} }()
	go func() {
		n, err := io.CopyN(out, in, limit)
		if err == nil && n == limit {
			p.cuts.Add(1)
		}
		done <- struct{}{}
	}()
	<-done
}

// TestCrashConnectionCutMidBatch runs replication through a proxy that
// cuts each connection after a random number of bytes, mid-batch.
func TestCrashConnectionCutMidBatch(t *testing.T) {
	var proxy *cutProxy
	rng := rand.New(rand.NewPCG(5, 6))
	var mu sync.Mutex
	budget := 12 // connections that get cut; later ones live
	c := newClusterVia(t, 1, func(i int, addr string) string {
		proxy = newCutProxy(t, addr, func() int64 {
			mu.Lock()
			defer mu.Unlock()
			if budget == 0 {
				return 1 << 62
			}
			budget--
			return int64(20_000 + rng.IntN(2_000_000))
		})
		return proxy.ln.Addr().String()
	})
	w := startGenWriter(c.primary.mount)
	r := startTornReader(c.second[0].mount)
	deadline := time.Now().Add(60 * time.Second)
	for proxy.cuts.Load() < 8 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	w.finish()
	c.converged()
	r.finish(t)
	if proxy.cuts.Load() < 8 {
		t.Errorf("only %d connections were cut", proxy.cuts.Load())
	}
	t.Logf("%d connections cut mid-stream, %d writes", proxy.cuts.Load(), w.writes.Load())
}
