package main

// The replication benchmark (`-suite sync`): real georep daemons (the
// binary built from this tree) on 127.0.0.1, a primary and a secondary
// with their own state, backing dirs and mounts in the scratch dir, and
// rsync on the same trees in the same run:
//
//   (a) 100 changed files in trees of N small files: `georep sync --wait`
//       (the primary runs on a far schedule, so nothing ships before it is
//       asked) vs `rsync -a --delete` of the same tree to a local target;
//   (b) a 1 GiB file with 1 MiB changed (256 writes of 4 KiB at random
//       offsets): bytes on the wire (counted by a proxy between the nodes,
//       TLS and framing included) and time vs `rsync --no-whole-file
//       --inplace`;
//   (c) the initial sync of the smallest tree of (a) vs `rsync -a`;
//   (d) replication lag under a steady write load (continuous mode): a
//       marker file written every 100 ms, the time until it is in the
//       secondary's backing dir, p50 and p99;
//   (e) failover and failback on the trees of (a): the primary is killed,
//       the secondary promoted and 1,000 files changed on it; the old
//       primary comes back, and the time for `georep failback start` to
//       reach completed is compared with `rsync -a --delete` bringing a
//       copy of the old tree up to date; then 1,000 more files change and
//       `georep failback commit` reports how long it froze the primary.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	syncBegin = "<!-- section: sync -->"
	syncEnd   = "<!-- /section -->"
)

type syncConfig struct {
	trees    []int // file counts for (a)
	bigSize  int64 // (b)
	lagSecs  int   // (d)
	lagRate  int64 // bytes per second written during (d)
	scratch  string
	bin      string
	progress io.Writer
}

type syncResult struct {
	tree []treeResult
	big  bigResult
	lag  lagResult
}

type treeResult struct {
	files                    int
	georepInit, rsyncInit    time.Duration
	georepInc, rsyncInc      time.Duration
	georepWire, rsyncSentInc int64
	failback                 failbackResult
}

// failbackResult is (e) for one tree.
type failbackResult struct {
	failover        time.Duration // georep failover start
	start, rsync    time.Duration // old primary's restart → failback completed; rsync -a --delete
	changed, during int           // files changed before failback start, and after it
	freeze          time.Duration // reported by failback commit
	commit          time.Duration // the whole failback commit command
}

type bigResult struct {
	size, changed        int64
	georep, rsync        time.Duration
	georepWire, rsyncOut int64
}

type lagResult struct {
	samples  []time.Duration
	rate     float64 // MB/s achieved
	duration time.Duration
}

// benchNode is one georep daemon of the benchmark.
type benchNode struct {
	name, state, backing, mount, addr string
	cmd                               *exec.Cmd
	log                               *os.File
}

func (c *syncConfig) logf(format string, a ...any) { fmt.Fprintf(c.progress, format+"\n", a...) }

func (c *syncConfig) georep(args ...string) (string, error) {
	out, err := exec.Command(c.bin, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("georep %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// newPair initializes a primary and a secondary under dir; the primary
// reaches the secondary through a counting proxy.
func (c *syncConfig) newPair(dir string) (a, b *benchNode, proxy *countProxy, err error) {
	a, b = &benchNode{name: "a"}, &benchNode{name: "b"}
	for _, n := range []*benchNode{a, b} {
		base := filepath.Join(dir, n.name)
		n.state, n.backing, n.mount = filepath.Join(base, "state"), filepath.Join(base, "backing"), filepath.Join(base, "mnt")
		for _, d := range []string{n.backing, n.mount} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, nil, nil, err
			}
		}
		if n.addr, err = freePort(); err != nil {
			return nil, nil, nil, err
		}
		if _, err := c.georep("init", "--state", n.state, "--name", n.name, "--listen", n.addr); err != nil {
			return nil, nil, nil, err
		}
	}
	proxy, err = newCountProxy(b.addr)
	if err != nil {
		return nil, nil, nil, err
	}
	aid, _ := c.georep("id", "--state", a.state)
	bid, _ := c.georep("id", "--state", b.state)
	if _, err := c.georep("peer", "add", "--state", a.state, "b", proxy.addr(), strings.TrimSpace(bid)); err != nil {
		return nil, nil, nil, err
	}
	if _, err := c.georep("peer", "add", "--state", b.state, "a", a.addr, strings.TrimSpace(aid)); err != nil {
		return nil, nil, nil, err
	}
	return a, b, proxy, nil
}

func (c *syncConfig) start(n *benchNode, args ...string) error {
	var err error
	if n.log, err = os.Create(filepath.Join(filepath.Dir(n.state), "daemon.log")); err != nil {
		return err
	}
	n.cmd = exec.Command(c.bin, append([]string{"daemon", "--state", n.state, "--backing", n.backing, "--mount", n.mount, "--log-level", "warn"}, args...)...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		return err
	}
	setLive(n.mount, true)
	for i := 0; i < 1200; i++ {
		if _, err := c.georep("status", "--state", n.state); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("daemon %s did not start (log %s)", n.name, n.log.Name())
}

// kill kills the daemon with SIGKILL and detaches its dead mount.
func (n *benchNode) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Kill()
	n.cmd.Wait()
	syscall.Unmount(n.mount, syscall.MNT_DETACH)
	setLive(n.mount, false)
	n.log.Close()
	n.cmd = nil
}

func (n *benchNode) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		n.cmd.Process.Kill()
		<-done
	}
	syscall.Unmount(n.mount, syscall.MNT_DETACH)
	setLive(n.mount, false)
	n.log.Close()
	n.cmd = nil
}

// syncWait times `georep sync --wait` on the primary.
func (c *syncConfig) syncWait(a *benchNode) (time.Duration, error) {
	start := time.Now()
	_, err := c.georep("sync", "--state", a.state, "--wait", "--timeout", "2h")
	return time.Since(start), err
}

func timeCmd(name string, args ...string) (time.Duration, string, error) {
	start := time.Now()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return 0, string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return time.Since(start), string(out), nil
}

// makeTree creates n small files (1 KiB) in directories of 1000.
func makeTree(root string, n int) error {
	buf := make([]byte, 1024)
	for i := 0; i < n; i++ {
		dir := filepath.Join(root, fmt.Sprintf("d%04d", i/1000))
		if i%1000 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		copy(buf, fmt.Sprintf("file %d\n", i))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%06d", i)), buf, 0o644); err != nil {
			return err
		}
	}
	return nil
}

var rsyncSent = regexp.MustCompile(`Total bytes sent: ([\d,.]+)`)

func parseRsyncSent(out string) int64 {
	m := rsyncSent.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.ParseInt(strings.NewReplacer(",", "", ".", "").Replace(m[1]), 10, 64)
	return n
}

// benchTree is (a) and (c) for one tree size.
func (c *syncConfig) benchTree(ctx context.Context, files int) (treeResult, error) {
	r := treeResult{files: files}
	dir := filepath.Join(c.scratch, fmt.Sprintf("tree%d", files))
	defer os.RemoveAll(dir)
	a, b, proxy, err := c.newPair(dir)
	if err != nil {
		return r, err
	}
	defer proxy.close()
	c.logf("sync bench: creating %d files", files)
	if err := makeTree(a.backing, files); err != nil {
		return r, err
	}
	target := filepath.Join(dir, "rsync-target")
	syncFS()
	c.logf("sync bench: rsync -a of %d files", files)
	if r.rsyncInit, _, err = timeCmd("rsync", "-a", "--delete", a.backing+"/", target+"/"); err != nil {
		return r, err
	}
	syncFS()
	if err := c.start(b); err != nil {
		return r, err
	}
	defer b.stop()
	c.logf("sync bench: georep initial sync of %d files", files)
	start := time.Now()
	if err := c.start(a, "--primary", "--schedule", "@every 10000h"); err != nil {
		return r, err
	}
	defer a.stop()
	if _, err := c.syncWait(a); err != nil {
		return r, err
	}
	r.georepInit = time.Since(start)
	if err := ctx.Err(); err != nil {
		return r, err
	}
	// 100 changed files, through the mount.
	rng := rand.New(rand.NewPCG(uint64(files), 1))
	for i := 0; i < 100; i++ {
		k := rng.IntN(files)
		p := filepath.Join(a.mount, fmt.Sprintf("d%04d", k/1000), fmt.Sprintf("f%06d", k))
		if err := os.WriteFile(p, []byte(fmt.Sprintf("changed %d %d\n", i, k)), 0o644); err != nil {
			return r, err
		}
	}
	syncFS()
	wire := proxy.bytes()
	if r.georepInc, err = c.syncWait(a); err != nil {
		return r, err
	}
	r.georepWire = proxy.bytes() - wire
	syncFS()
	var out string
	if r.rsyncInc, out, err = timeCmd("rsync", "-a", "--delete", "--stats", "--exclude=/.georep", a.backing+"/", target+"/"); err != nil {
		return r, err
	}
	r.rsyncSentInc = parseRsyncSent(out)
	if out, err := c.georep("verify", "--state", a.state); err != nil {
		return r, fmt.Errorf("verify after the incremental sync: %v %s", err, out)
	}
	// target is now a copy of the tree as both nodes hold it.
	r.failback, err = c.benchFailback(ctx, a, b, target, files)
	return r, err
}

// change rewrites n files of the tree of files through the mount of n.
func change(root string, files, n int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := 0; i < n; i++ {
		k := rng.IntN(files)
		p := filepath.Join(root, fmt.Sprintf("d%04d", k/1000), fmt.Sprintf("f%06d", k))
		if err := os.WriteFile(p, []byte(fmt.Sprintf("changed again %d %d %d\n", seed, i, k)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// benchFailback is (e): a is the primary of a tree of files that b and
// target hold too.
func (c *syncConfig) benchFailback(ctx context.Context, a, b *benchNode, target string, files int) (failbackResult, error) {
	r := failbackResult{changed: 1000, during: 1000}
	c.logf("sync bench: failover of a %d-file tree", files)
	a.kill()
	t0 := time.Now()
	if _, err := c.georep("failover", "start", "--state", b.state); err != nil {
		return r, err
	}
	r.failover = time.Since(t0)
	if err := change(b.mount, files, r.changed, 1); err != nil {
		return r, err
	}
	syncFS()
	// The old primary pulls the delta from its restart on: it comes back
	// fenced, follows b, and is brought in line while failback start waits.
	c.logf("sync bench: failback of a %d-file tree", files)
	t0 = time.Now()
	if err := c.start(a); err != nil {
		return r, err
	}
	if _, err := c.georep("failback", "start", "--state", a.state, "--wait", "--timeout", "1h"); err != nil {
		return r, err
	}
	r.start = time.Since(t0)
	syncFS()
	var err error
	if r.rsync, _, err = timeCmd("rsync", "-a", "--delete", "--exclude=/.georep", b.backing+"/", target+"/"); err != nil {
		return r, err
	}
	if err := change(b.mount, files, r.during, 2); err != nil {
		return r, err
	}
	for {
		out, err := c.georep("failback", "status", "--state", a.state, "--json")
		if err != nil {
			return r, err
		}
		if strings.Contains(out, `"state": "completed"`) {
			break
		}
		if err := ctx.Err(); err != nil {
			return r, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	t0 = time.Now()
	out, err := c.georep("failback", "commit", "--state", a.state, "--json")
	if err != nil {
		return r, err
	}
	r.commit = time.Since(t0)
	var rep struct {
		Freeze int64 `json:"freeze_ns"`
		Known  bool  `json:"freeze_known"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.Known {
		return r, fmt.Errorf("failback commit reported no freeze time: %s", out)
	}
	r.freeze = time.Duration(rep.Freeze)
	if err := c.waitRole(a, "primary", time.Minute); err != nil {
		return r, err
	}
	if _, err := c.syncWait(a); err != nil {
		return r, err
	}
	if out, err := c.georep("verify", "--state", a.state); err != nil {
		return r, fmt.Errorf("verify after the failback: %v %s", err, out)
	}
	return r, nil
}

// waitRole waits until n's daemon reports role.
func (c *syncConfig) waitRole(n *benchNode, role string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		out, err := c.georep("status", "--state", n.state, "--json", "--local")
		if err == nil && strings.Contains(out, `"role": "`+role+`"`) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s is not %s after %s (log %s)", n.name, role, within, n.log.Name())
}

// benchBig is (b).
func (c *syncConfig) benchBig(ctx context.Context) (bigResult, error) {
	r := bigResult{size: c.bigSize, changed: 1 << 20}
	dir := filepath.Join(c.scratch, "big")
	defer os.RemoveAll(dir)
	a, b, proxy, err := c.newPair(dir)
	if err != nil {
		return r, err
	}
	defer proxy.close()
	c.logf("sync bench: writing a %d MiB file", c.bigSize>>20)
	f, err := os.Create(filepath.Join(a.backing, "big"))
	if err != nil {
		return r, err
	}
	rng := rand.New(rand.NewPCG(42, 42))
	buf := make([]byte, 1<<20)
	for off := int64(0); off < c.bigSize; off += int64(len(buf)) {
		for i := 0; i+8 <= len(buf); i += 8 {
			v := rng.Uint64()
			for k := 0; k < 8; k++ {
				buf[i+k] = byte(v >> (8 * k))
			}
		}
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return r, err
		}
	}
	f.Close()
	target := filepath.Join(dir, "rsync-target")
	if _, _, err := timeCmd("rsync", "-a", a.backing+"/big", target+"/"); err != nil {
		return r, err
	}
	if err := c.start(b); err != nil {
		return r, err
	}
	defer b.stop()
	if err := c.start(a, "--primary", "--schedule", "@every 10000h"); err != nil {
		return r, err
	}
	defer a.stop()
	c.logf("sync bench: initial sync of the big file")
	if _, err := c.syncWait(a); err != nil {
		return r, err
	}
	mf, err := os.OpenFile(filepath.Join(a.mount, "big"), os.O_WRONLY, 0)
	if err != nil {
		return r, err
	}
	page := make([]byte, 4096)
	for i := 0; i < 256; i++ {
		for k := range page {
			page[k] = byte(rng.Uint32())
		}
		off := rng.Int64N(c.bigSize/4096) * 4096
		if _, err := mf.WriteAt(page, off); err != nil {
			mf.Close()
			return r, err
		}
	}
	mf.Close()
	syncFS()
	wire := proxy.bytes()
	if r.georep, err = c.syncWait(a); err != nil {
		return r, err
	}
	r.georepWire = proxy.bytes() - wire
	syncFS()
	var out string
	if r.rsync, out, err = timeCmd("rsync", "--no-whole-file", "--inplace", "--stats", a.backing+"/big", target+"/big"); err != nil {
		return r, err
	}
	r.rsyncOut = parseRsyncSent(out)
	if out, err := c.georep("verify", "--state", a.state); err != nil {
		return r, fmt.Errorf("verify after the big-file sync: %v %s", err, out)
	}
	return r, ctx.Err()
}

// benchLag is (d).
func (c *syncConfig) benchLag(ctx context.Context) (lagResult, error) {
	var r lagResult
	dir := filepath.Join(c.scratch, "lag")
	defer os.RemoveAll(dir)
	a, b, proxy, err := c.newPair(dir)
	if err != nil {
		return r, err
	}
	defer proxy.close()
	if err := c.start(b); err != nil {
		return r, err
	}
	defer b.stop()
	if err := c.start(a, "--primary"); err != nil {
		return r, err
	}
	defer a.stop()
	if _, err := c.syncWait(a); err != nil {
		return r, err
	}
	c.logf("sync bench: lag under %d MB/s for %ds", c.lagRate/1e6, c.lagSecs)
	stop := make(chan struct{})
	var written atomic.Int64
	writerDone := make(chan error, 1)
	go func() { // the steady load: 1 MiB writes over 32 files
		buf := make([]byte, 1<<20)
		tick := time.NewTicker(time.Duration(float64(time.Second) * float64(len(buf)) / float64(c.lagRate)))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			case <-tick.C:
			}
			f, err := os.OpenFile(filepath.Join(a.mount, fmt.Sprintf("load%02d", i%32)), os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				writerDone <- err
				return
			}
			_, err = f.WriteAt(buf, int64(i/32%16)<<20)
			f.Close()
			if err != nil {
				writerDone <- err
				return
			}
			written.Add(int64(len(buf)))
		}
	}()
	start := time.Now()
	for i := 0; time.Since(start) < time.Duration(c.lagSecs)*time.Second; i++ {
		if err := ctx.Err(); err != nil {
			close(stop)
			return r, err
		}
		name := fmt.Sprintf("marker%05d", i)
		t0 := time.Now()
		if err := os.WriteFile(filepath.Join(a.mount, name), []byte("m"), 0o644); err != nil {
			close(stop)
			return r, err
		}
		for {
			if _, err := os.Lstat(filepath.Join(b.backing, name)); err == nil {
				break
			}
			if time.Since(t0) > time.Minute {
				close(stop)
				return r, fmt.Errorf("marker %s never reached the secondary", name)
			}
			time.Sleep(2 * time.Millisecond)
		}
		r.samples = append(r.samples, time.Since(t0))
		time.Sleep(time.Until(t0.Add(100 * time.Millisecond)))
	}
	close(stop)
	r.duration = time.Since(start)
	r.rate = float64(written.Load()) / r.duration.Seconds() / 1e6
	if err := <-writerDone; err != nil {
		return r, err
	}
	return r, nil
}

func syncFS() { syscall.Sync() }

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

// countProxy forwards TCP to a target and counts the bytes both ways.
type countProxy struct {
	ln net.Listener
	n  atomic.Int64
}

func newCountProxy(target string) (*countProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countProxy{ln: ln}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer out.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(countingWriter{out, &p.n}, in); done <- struct{}{} }()
				go func() { io.Copy(countingWriter{in, &p.n}, out); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return p, nil
}

func (p *countProxy) addr() string { return p.ln.Addr().String() }
func (p *countProxy) close()       { p.ln.Close() }

// bytes is what went through so far, both ways.
func (p *countProxy) bytes() int64 { return p.n.Load() }

// countingWriter counts what it writes.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func (r syncResult) markdown(m machine, date time.Time, cfg syncConfig) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("%s\n", syncBegin)
	p("## Replication, failover and failback: georep vs rsync\n\n")
	p("- Date: %s\n", date.Format("2006-01-02 15:04 UTC"))
	p("- Machine: Linux %s; CPU %s; %d CPUs; %s memory; scratch file system %s\n", m.kernel, m.cpu, m.nproc, m.mem, m.fs)
	p("- Go %s; georep %s; %s\n", m.goVersion, m.revision, rsyncVersion())
	p("- Reproduce: `make bench` (or `go run ./bench -suite sync -out BENCHMARKS.md`), as root\n\n")
	p("Both georep nodes are real daemons (the binary built from this tree) on 127.0.0.1 with their own state, backing dirs and mounts ")
	p("on the scratch file system; the primary reaches the secondary through a counting TCP proxy (wire bytes include TLS and framing). ")
	p("rsync copies between two local directories of the same file system. `sync(2)` runs before each timed step.\n\n")
	p("**(a) 100 changed files** (rewritten through the mount) in a tree of small files (1 KiB, 1000 per directory). ")
	p("The primary runs with `--schedule \"@every 10000h\"`, so nothing ships until `georep sync --wait`, which is timed; ")
	p("rsync is `rsync -a --delete` of the same tree to a local copy made before the change. Target (SPEC §6): ≥ 100× faster, not growing with tree size.\n\n")
	p("| files | georep sync --wait | rsync -a --delete | georep vs rsync | georep wire bytes | rsync bytes sent |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, t := range r.tree {
		p("| %d | %s | %s | %.0f× faster | %d | %d |\n", t.files, secs(t.georepInc), secs(t.rsyncInc), t.rsyncInc.Seconds()/t.georepInc.Seconds(), t.georepWire, t.rsyncSentInc)
	}
	p("\n**(b) %d MiB file, 1 MiB changed** (256 writes of 4 KiB at random offsets through the mount). Target: ≤ 1.1 MiB shipped, ≥ 20× faster than `rsync --no-whole-file --inplace`.\n\n", r.big.size>>20)
	p("| | time | bytes |\n| --- | ---: | ---: |\n")
	p("| georep sync --wait | %s | %d on the wire (%.2f MiB) |\n", secs(r.big.georep), r.big.georepWire, float64(r.big.georepWire)/(1<<20))
	p("| rsync --no-whole-file --inplace | %s | %d sent |\n", secs(r.big.rsync), r.big.rsyncOut)
	p("| georep vs rsync | %.1f× faster | |\n", r.big.rsync.Seconds()/r.big.georep.Seconds())
	p("\n**(c) Initial sync** of the trees of (a) to an empty secondary (georep: from the primary's start until `sync --wait` returns, the tree comparison included) vs `rsync -a` to an empty directory. Target: ≥ 1× (faster).\n\n")
	p("| files | georep | rsync -a | georep vs rsync |\n| ---: | ---: | ---: | ---: |\n")
	for _, t := range r.tree {
		p("| %d | %s | %s | %.2f× |\n", t.files, secs(t.georepInit), secs(t.rsyncInit), t.rsyncInit.Seconds()/t.georepInit.Seconds())
	}
	p("\n**(d) Replication lag** in continuous mode under a steady load of %d MB/s requested (%.1f MB/s achieved: 1 MiB writes over 32 files through the mount) for %s: ",
		cfg.lagRate/1e6, r.lag.rate, r.lag.duration.Round(time.Second))
	p("a marker file written every 100 ms, time until it is in the secondary's backing dir (polled every 2 ms). Target: p99 < 1 s.\n\n")
	p("| samples | p50 | p99 | max |\n| ---: | ---: | ---: | ---: |\n")
	p("| %d | %s | %s | %s |\n", len(r.lag.samples), secs(percentile(r.lag.samples, 0.5)), secs(percentile(r.lag.samples, 0.99)), secs(percentile(r.lag.samples, 1)))
	p("\n**(e) Failover and failback** on the trees of (a), after its incremental sync: the primary a is killed (SIGKILL), `georep failover start` promotes b, ")
	p("1,000 files are rewritten through b's mount, then a is restarted and `georep failback start --wait` run on it: the time from a's restart (it comes back fenced, ")
	p("joins b's history and is brought in line in the background) until the failback is completed, against `rsync -a --delete` bringing a copy of the old tree (taken by (a)'s rsync) up to date with b's. ")
	p("Then 1,000 more files are rewritten on b and, once the failback status is completed again, `georep failback commit` runs: the freeze is what it reports ")
	p("(b's mount frozen until the roles have swapped). `verify` passes after each run. Targets (SPEC §6): freeze < 1 s with 1,000 files changed since failback start; completed faster than rsync.\n\n")
	p("| files | failover start | old primary restarted → failback completed | rsync -a --delete | georep vs rsync | failback commit freeze | commit command |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, t := range r.tree {
		f := t.failback
		p("| %d | %s | %s | %s | %.1f× faster | %s | %s |\n", t.files, secs(f.failover), secs(f.start), secs(f.rsync),
			f.rsync.Seconds()/f.start.Seconds(), secs(f.freeze), secs(f.commit))
	}
	p("%s\n", syncEnd)
	return b.String()
}

func rsyncVersion() string {
	out, err := exec.Command("rsync", "--version").Output()
	if err != nil {
		return "rsync unknown"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.Join(strings.Fields(line)[:3], " ")
}

// runSync runs the replication benchmark.
func runSync(ctx context.Context, cfg config, stdout, progress io.Writer) error {
	if _, err := exec.LookPath("rsync"); err != nil {
		return fmt.Errorf("the sync benchmark compares with rsync: %w", err)
	}
	scratch, err := os.MkdirTemp(cfg.dir, "georep-syncbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	sc := syncConfig{trees: cfg.syncTrees, bigSize: 1 << 30, lagSecs: 20, lagRate: 50e6, scratch: scratch, progress: progress,
		bin: filepath.Join(scratch, "georep")}
	if cfg.quick {
		sc.trees, sc.bigSize, sc.lagSecs = []int{2000}, 64<<20, 3
	}
	if out, err := exec.Command("go", "build", "-o", sc.bin, "./cmd/georep").CombinedOutput(); err != nil {
		return fmt.Errorf("build georep: %v: %s", err, out)
	}
	var res syncResult
	for _, n := range sc.trees {
		t, err := sc.benchTree(ctx, n)
		if err != nil {
			err = fmt.Errorf("tree of %d files: %w", n, err)
			sc.logf("sync bench: %v (removing the scratch trees)", err)
			return err
		}
		sc.logf("sync bench: %d files: georep %s vs rsync %s (incremental); initial %s vs %s; failback start %s vs rsync %s, commit froze %s",
			n, t.georepInc, t.rsyncInc, t.georepInit, t.rsyncInit, t.failback.start, t.failback.rsync, t.failback.freeze)
		res.tree = append(res.tree, t)
	}
	if res.big, err = sc.benchBig(ctx); err != nil {
		return fmt.Errorf("big file: %w", err)
	}
	sc.logf("sync bench: big file: georep %s %d bytes vs rsync %s %d bytes", res.big.georep, res.big.georepWire, res.big.rsync, res.big.rsyncOut)
	if res.lag, err = sc.benchLag(ctx); err != nil {
		return fmt.Errorf("lag: %w", err)
	}
	md := res.markdown(machineInfo(scratch), time.Now().UTC(), sc)
	fmt.Fprint(stdout, md)
	if cfg.out != "" {
		return writeSection(cfg.out, md)
	}
	return nil
}
