package integration

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// switchProxy forwards TCP to a target until cut: then it closes every
// connection it carries and refuses new ones until healed (a partition).
type switchProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	open   map[net.Conn]bool
	down   bool
	wg     sync.WaitGroup
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, target: target, open: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut(); p.wg.Wait() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				in.Close()
				continue
			}
			p.wg.Add(1)
			p.open[in] = true
			p.mu.Unlock()
			go p.forward(in)
		}
	}()
	return p
}

func (p *switchProxy) addr() string { return p.ln.Addr().String() }

func (p *switchProxy) forward(in net.Conn) {
	defer p.wg.Done()
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		in.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		in.Close()
		out.Close()
		return
	}
	p.open[out] = true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(in, out); done <- struct{}{} }()
	go func() { io.Copy(out, in); done <- struct{}{} }()
	<-done
	in.Close()
	out.Close()
	p.mu.Lock()
	delete(p.open, in)
	delete(p.open, out)
	p.mu.Unlock()
}

// cut partitions: every carried connection is closed, new ones refused.
func (p *switchProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.open {
		c.Close()
	}
}

func (p *switchProxy) heal() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// writeLedger remembers every write a test made that an application was told
// succeeded: the last content of each file, and on which node.
type writeLedger struct {
	mu    sync.Mutex
	files map[string]writeLedgerEntry
}

type writeLedgerEntry struct {
	sum  [32]byte
	node string
}

// fuseSuperMagic is statfs's f_type of a FUSE file system.
const fuseSuperMagic = 0x65735546

// errBypassed: the write went to the mount point's bare directory (no
// daemon mounted there), not to georep.
var errBypassed = errors.New("not on a FUSE mount")

func newWriteLedger() *writeLedger { return &writeLedger{files: map[string]writeLedgerEntry{}} }

// write writes data to rel under the mount of node d and records it if
// the write was acknowledged.
func (l *writeLedger) write(d *daemon, node, rel string, data []byte) error {
	p := filepath.Join(d.mount, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	// While a killed daemon restarts there is a moment between the dead
	// mount's detach and the new mount when the path is the bare
	// directory underneath: a write there never reached georep.
	var sfs unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &sfs) == nil && sfs.Type != fuseSuperMagic {
		f.Close()
		return errBypassed
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.files[rel] = writeLedgerEntry{sha256.Sum256(data), node}
	l.mu.Unlock()
	return nil
}

func (l *writeLedger) mustWrite(t *testing.T, d *daemon, node, rel string, data []byte) {
	t.Helper()
	if err := l.write(d, node, rel, data); err != nil {
		t.Fatalf("write %s on %s: %v", rel, node, err)
	}
}

// where finds rel's recorded content: "live" in the backing dir live,
// "conflict" in a conflict copy in one of the backing dirs, "" nowhere.
func (l *writeLedger) where(rel string, live string, keep ...string) string {
	l.mu.Lock()
	e, ok := l.files[rel]
	l.mu.Unlock()
	if !ok {
		return "unrecorded"
	}
	if b, err := os.ReadFile(filepath.Join(live, rel)); err == nil && sha256.Sum256(b) == e.sum {
		return "live"
	}
	for _, backing := range keep {
		dirs, _ := filepath.Glob(filepath.Join(backing, ".georep", "conflicts", "*"))
		for _, d := range dirs {
			if b, err := os.ReadFile(filepath.Join(d, rel)); err == nil && sha256.Sum256(b) == e.sum {
				return "conflict"
			}
		}
	}
	return ""
}

// check: every acknowledged write is in the live tree or preserved in a
// conflict copy on one of the keep backing dirs.
func (l *writeLedger) check(t *testing.T, live string, keep ...string) (inLive, inConflict int) {
	t.Helper()
	l.mu.Lock()
	paths := make([]string, 0, len(l.files))
	for p := range l.files {
		paths = append(paths, p)
	}
	l.mu.Unlock()
	slices.Sort(paths)
	lost := 0
	for _, p := range paths {
		switch l.where(p, live, keep...) {
		case "live":
			inLive++
		case "conflict":
			inConflict++
		default:
			if lost++; lost <= 20 {
				have := "missing"
				if b, err := os.ReadFile(filepath.Join(live, p)); err == nil {
					have = fmt.Sprintf("%d bytes, sha256 %x", len(b), sha256.Sum256(b))
				}
				t.Errorf("acknowledged write lost: %s (written on %s, sha256 %x; the live tree has: %s)", p, l.files[p].node, l.files[p].sum, have)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged writes lost of %d", lost, len(paths))
	}
	return
}

// statusOf returns a node's status (nil if its daemon does not answer).
func statusOf(t testing.TB, d *daemon) map[string]any {
	t.Helper()
	r := georep(t, "status", "--state", d.state, "--json", "--local")
	if r.code != 0 {
		return nil
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

func roleOf(t testing.TB, d *daemon) (string, uint64) {
	st := statusOf(t, d)
	if st == nil {
		return "", 0
	}
	return st["role"].(string), uint64(st["epoch"].(float64))
}

// waitRole waits until d has role (and, if epoch > 0, that epoch).
func waitRole(t *testing.T, d *daemon, role string, epoch uint64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got string
	var e uint64
	for time.Now().Before(deadline) {
		if got, e = roleOf(t, d); got == role && (epoch == 0 || e == epoch) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s is %s at epoch %d after %s, want %s at epoch %d\n%s", d.state, got, e, within, role, epoch, tail(d.log.String(), 40))
}

// syncWaitOn runs sync --wait on the node d (the primary).
func syncWaitOn(t *testing.T, d *daemon) {
	t.Helper()
	r := georep(t, "sync", "--state", d.state, "--wait", "--timeout", "60s")
	if r.code != 0 {
		t.Fatalf("sync --wait on %s: exit %d: %s%s\n%s", d.state, r.code, r.stdout, r.stderr, tail(d.log.String(), 40))
	}
}

// verifyOn runs verify on the primary d and fails on differences.
func verifyOn(t *testing.T, d *daemon) {
	t.Helper()
	r := georep(t, "verify", "--state", d.state)
	if r.code != 0 {
		t.Fatalf("verify on %s: exit %d:\n%s%s", d.state, r.code, r.stdout, r.stderr)
	}
}

// sameTrees fails unless every backing dir holds what the first does.
func sameTrees(t *testing.T, ds ...*daemon) {
	t.Helper()
	want := snapshotTree(t, ds[0].backing)
	for _, d := range ds[1:] {
		if diff := diffTrees(want, snapshotTree(t, d.backing)); diff != "" {
			t.Fatalf("%s differs from %s:\n%s", d.backing, ds[0].backing, diff)
		}
	}
}

// failbackTo runs failback start --wait and commit on d, and returns the
// freeze time the commit printed.
func failbackTo(t *testing.T, d *daemon) string {
	t.Helper()
	r := georep(t, "failback", "start", "--state", d.state, "--wait", "--timeout", "90s")
	if r.code != 0 {
		t.Fatalf("failback start on %s: exit %d: %s%s\n%s", d.state, r.code, r.stdout, r.stderr, tail(d.log.String(), 60))
	}
	r = georep(t, "failback", "commit", "--state", d.state, "--json")
	if r.code != 0 {
		t.Fatalf("failback commit on %s: exit %d: %s%s\n%s", d.state, r.code, r.stdout, r.stderr, tail(d.log.String(), 60))
	}
	var rep struct {
		Freeze      int64 `json:"freeze_ns"`
		FreezeKnown bool  `json:"freeze_known"`
		Epoch       uint64
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("failback commit output %q: %v", r.stdout, err)
	}
	return time.Duration(rep.Freeze).String()
}

// erofs reports whether a write to d's mount fails with EROFS.
func erofs(d *daemon) bool {
	err := os.WriteFile(filepath.Join(d.mount, fmt.Sprintf("probe-%d", rand.Int())), []byte("x"), 0o644)
	return errors.Is(err, syscall.EROFS)
}

// conflictCopies lists the conflict copies (regular files) below a
// backing dir, relative to their conflict dir.
func conflictCopies(t *testing.T, backing string) []string {
	t.Helper()
	var out []string
	root := filepath.Join(backing, ".georep", "conflicts")
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		// <epoch>/<path>
		if i := strings.IndexByte(rel, '/'); i >= 0 {
			out = append(out, rel[i+1:])
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// bg is a writer running in the background against whichever node is
// primary: it records what was acknowledged and counts failures.
type bg struct {
	l      *writeLedger
	target atomic.Pointer[daemon]
	names  map[*daemon]string
	stop   chan struct{}
	done   chan struct{}
	ok     atomic.Int64
	failed atomic.Int64
	// longest is the longest a write took (ns).
	longest atomic.Int64
	mu      sync.Mutex
	errs    map[string]int
	odd     []string // failures no role change explains, in full
}

func startBG(l *writeLedger, d *daemon, names map[*daemon]string, prefix string) *bg {
	w := &bg{l: l, names: names, stop: make(chan struct{}), done: make(chan struct{}), errs: map[string]int{}}
	w.target.Store(d)
	go func() {
		defer close(w.done)
		rng := rand.New(rand.NewPCG(11, 12))
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			d := w.target.Load()
			data := make([]byte, 1+rng.IntN(20000))
			for k := range data {
				data[k] = byte(rng.IntN(256))
			}
			start := time.Now()
			err := l.write(d, names[d], fmt.Sprintf("%s/%03d/%06d", prefix, i%100, i), data)
			if took := time.Since(start); err == nil && int64(took) > w.longest.Load() {
				w.longest.Store(int64(took))
			}
			if err != nil {
				w.failed.Add(1)
				w.mu.Lock()
				if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EIO) {
					w.odd = append(w.odd, fmt.Sprintf("%s on %s", err, w.names[d]))
				}
				if e := errors.Unwrap(err); e != nil {
					err = e
				}
				w.errs[err.Error()]++
				w.mu.Unlock()
				time.Sleep(10 * time.Millisecond)
				continue
			}
			w.ok.Add(1)
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
		}
	}()
	return w
}

func (w *bg) finish() {
	close(w.stop)
	<-w.done
}

func errorsIsEROFS(err error) bool { return errors.Is(err, syscall.EROFS) }

// rename renames from to to under d's mount and moves the recorded writes
// below from with it.
func (l *writeLedger) rename(t *testing.T, d *daemon, from, to string) {
	t.Helper()
	if err := os.Rename(filepath.Join(d.mount, from), filepath.Join(d.mount, to)); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, e := range l.files {
		if p == from || strings.HasPrefix(p, from+"/") {
			delete(l.files, p)
			l.files[to+strings.TrimPrefix(p, from)] = e
		}
	}
}
