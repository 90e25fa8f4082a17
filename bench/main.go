// Command bench owns georep's mount benchmark, the one `make bench` runs.
//
// In one run, on one backing file system, it measures three targets:
//
//   - native: a plain directory of the backing file system, no FUSE;
//   - go-fuse loopback: go-fuse's plain LoopbackRoot, mounted with exactly
//     the FUSE options and cache timeouts georep uses (fs.MountOptions, 1 s
//     entry and attribute timeouts);
//   - georep: the journaled mount (fs.New over a fresh node state dir).
//
// When the kernel offers FUSE passthrough, go-fuse's plain loopback uses it
// (its reads and writes then go straight from the kernel to the backing
// file, never through the daemon), which georep refuses by design: every
// write must reach its journal. The benchmark then also measures a
// reference target, the same loopback with passthrough disabled, so the
// cost of journaling alone can be read off too.
//
// Workloads, each in a fresh subdirectory of the target: 1 MiB sequential
// writes of a large file then fsync; 4 KiB pwrites at random aligned
// offsets of an existing file then fsync; and creating, stating and
// unlinking many small files in one directory. Each runs 3 times (-reps)
// per target, targets interleaved per repetition, and the median is
// reported. sync(2) runs before every timed run; no caches are dropped.
//
// The result is printed and, with -out, written into BENCHMARKS.md between
// the markers <!-- section: mount --> and <!-- /section -->; every other
// part of an existing file (other benchmarks' sections) is kept.
//
// Usage (as root, with /dev/fuse; georep mounts with DirectMount):
//
//	go run ./bench -out BENCHMARKS.md [-dir /var/tmp] [-quick] [-reps 3]
//
// -dir names the directory in which a fresh scratch dir is made (and
// removed at the end); its file system is the one measured.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	georepfs "github.com/georep/georep/fs"
	"github.com/georep/georep/node"
)

// Markers of this benchmark's section of BENCHMARKS.md.
const (
	sectionBegin  = "<!-- section: mount -->"
	sectionEnd    = "<!-- /section -->"
	sectionPrefix = "<!-- section: "
)

type config struct {
	out   string // BENCHMARKS.md to update; empty: print only
	dir   string // parent of the scratch dir
	quick bool
	reps  int // runs per workload and target; 0: the sizes' default
	// suite: mount, sync or all.
	suite     string
	syncTrees []int // tree sizes of the sync benchmark
}

// sizes of one run's workloads.
type sizes struct {
	seqBytes  int64 // 1 MiB sequential write: file size
	randBytes int64 // 4 KiB random write: file size
	randOps   int   // 4 KiB random write: pwrite calls
	files     int   // small files
	reps      int   // runs per workload and target
}

var (
	fullSizes  = sizes{seqBytes: 512 << 20, randBytes: 256 << 20, randOps: 20000, files: 10000, reps: 3}
	quickSizes = sizes{seqBytes: 32 << 20, randBytes: 16 << 20, randOps: 2000, files: 1000, reps: 1}
)

const (
	seqBlock  = 1 << 20
	randBlock = 4 << 10
	smallSize = 100
	randSeed  = 0x6765_6f72_6570 // "georep"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.out, "out", "", "BENCHMARKS.md to write the results into (its mount section; other sections are kept); empty: print only")
	flag.StringVar(&cfg.dir, "dir", "/var/tmp", "directory in which the scratch dir (backing dirs, mount points, state dir) is created and, at the end, removed; its file system is the one measured")
	flag.BoolVar(&cfg.quick, "quick", false, "tiny smoke run: small sizes, one run per workload")
	flag.IntVar(&cfg.reps, "reps", 0, "runs per workload and target (default 3; 1 with -quick); the median is reported")
	flag.StringVar(&cfg.suite, "suite", "all", "mount (the journaled mount), sync (replication vs rsync) or all")
	trees := flag.String("sync-files", "100000,1000000", "tree sizes (files) of the sync benchmark")
	flag.Parse()
	for _, f := range strings.Split(*trees, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1000 {
			fmt.Fprintln(os.Stderr, "bench: bad -sync-files:", *trees)
			os.Exit(2)
		}
		cfg.syncTrees = append(cfg.syncTrees, n)
	}
	if cfg.suite != "mount" && cfg.suite != "sync" && cfg.suite != "all" {
		fmt.Fprintln(os.Stderr, "bench: -suite is mount, sync or all")
		os.Exit(2)
	}
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "bench: unexpected arguments:", flag.Args())
		os.Exit(2)
	}

	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\nbench: %v: stopping after the current operation and unmounting (send it again to detach the mounts and exit at once)\n", s)
		cancel()
		<-sigs
		detachAll()
		os.Exit(130)
	}()

	var err error
	if cfg.suite != "sync" {
		err = run(ctx, cfg, os.Stdout, os.Stderr)
	}
	if err == nil && cfg.suite != "mount" {
		err = runSync(ctx, cfg, os.Stdout, os.Stderr)
	}
	interrupted := ctx.Err() != nil
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
		if interrupted {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

// live holds the mount points currently mounted, for the second-signal
// escape hatch (detachAll).
var live struct {
	sync.Mutex
	m map[string]bool
}

func setLive(mnt string, on bool) {
	live.Lock()
	defer live.Unlock()
	if live.m == nil {
		live.m = map[string]bool{}
	}
	if on {
		live.m[mnt] = true
	} else {
		delete(live.m, mnt)
	}
}

func detachAll() {
	live.Lock()
	defer live.Unlock()
	for mnt := range live.m {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			fmt.Fprintf(os.Stderr, "bench: detach %s: %v\n", mnt, err)
		}
	}
}

// target is one file system the workloads run on.
type target struct {
	key  string // short name, in progress lines and the list of runs
	root string // directory the workloads run in
	// settle, if set, waits for the target's background work (georep's
	// journal flusher) before a timed run.
	settle func(context.Context) error
	close  func() error
}

const (
	tNative   = "native"
	tLoopback = "loopback"
	tNoPT     = "loopback-nopt"
	tGeorep   = "georep"
)

// metric is one row of the table.
type metric struct {
	key, label, unit string
}

// workload runs once in dir (a fresh directory of a target). It calls
// settle right before its timed part, and returns one value per metric.
type workload struct {
	key     string
	metrics []metric
	run     func(ctx context.Context, dir string, sz sizes, settle func() error) (map[string]float64, error)
}

func workloads(sz sizes) []workload {
	return []workload{
		{key: "seq", run: seqWrite, metrics: []metric{
			{"seq", fmt.Sprintf("1 MiB sequential write (%s file, fsync)", mib(sz.seqBytes)), "MB/s"}}},
		{key: "rand", run: randWrite, metrics: []metric{
			{"rand", fmt.Sprintf("4 KiB random write (%d pwrites in a %s file, fsync)", sz.randOps, mib(sz.randBytes)), "IOPS"}}},
		{key: "small", run: smallFiles, metrics: []metric{
			{"create", fmt.Sprintf("small files: create (%d × open+write %d B+close)", sz.files, smallSize), "ops/s"},
			{"stat", fmt.Sprintf("small files: stat (%d)", sz.files), "ops/s"},
			{"unlink", fmt.Sprintf("small files: unlink (%d)", sz.files), "ops/s"}}},
	}
}

func mib(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

// results holds every sample: metric key -> target key -> values in run
// order.
type results map[string]map[string][]float64

func (r results) add(m, t string, v float64) {
	if r[m] == nil {
		r[m] = map[string][]float64{}
	}
	r[m][t] = append(r[m][t], v)
}

func (r results) median(m, t string) float64 { return median(r[m][t]) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// run is the whole benchmark. The table goes to stdout, progress to
// progress.
func run(ctx context.Context, cfg config, stdout, progress io.Writer) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root: georep mounts with DirectMount (mount(2)), and so does the loopback here")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no FUSE device: %w", err)
	}
	sz := fullSizes
	if cfg.quick {
		sz = quickSizes
	}
	if cfg.reps > 0 {
		sz.reps = cfg.reps
	}
	parent := cfg.dir
	if parent == "" {
		parent = os.TempDir()
	}
	scratch, err := os.MkdirTemp(parent, "georep-bench-")
	if err != nil {
		return fmt.Errorf("create scratch dir: %w", err)
	}
	if real, err := filepath.EvalSymlinks(scratch); err == nil {
		scratch = real
	}
	// Runs last: after every target is closed, even on panic.
	defer func() { err = errors.Join(err, finish(scratch, progress)) }()

	var targets []*target
	defer func() {
		for i := len(targets) - 1; i >= 0; i-- {
			if cerr := targets[i].close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("close %s: %w", targets[i].key, cerr))
			}
		}
	}()

	mach := machineInfo(scratch)
	fmt.Fprintf(progress, "bench: scratch dir %s (%s)\n", scratch, mach.fs)

	// native
	nat := filepath.Join(scratch, "native")
	if err := os.Mkdir(nat, 0o755); err != nil {
		return err
	}
	spread := setTopDir(nat)
	targets = append(targets, &target{key: tNative, root: nat, close: func() error { return nil }})

	// plain go-fuse loopback, georep's mount options
	lt, srv, err := mountLoopback(filepath.Join(scratch, "loopback"), true)
	if err != nil {
		return err
	}
	targets = append(targets, lt)
	passthrough := srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0
	proto := fmt.Sprintf("%d.%d", srv.KernelSettings().Major, srv.KernelSettings().Minor)

	// the same loopback without passthrough, when passthrough is on offer
	if passthrough {
		nt, _, err := mountLoopback(filepath.Join(scratch, "loopback-nopt"), false)
		if err != nil {
			return err
		}
		targets = append(targets, nt)
	}

	// georep
	gt, err := mountGeorep(ctx, filepath.Join(scratch, "georep"))
	if err != nil {
		return err
	}
	targets = append(targets, gt)

	res := results{}
	wls := workloads(sz)
	for _, w := range wls {
		for rep := 1; rep <= sz.reps; rep++ {
			for _, t := range targets {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("interrupted: %w", err)
				}
				vals, err := runOnce(ctx, w, t, rep, sz)
				if err != nil {
					return fmt.Errorf("%s on %s, run %d: %w", w.key, t.key, rep, err)
				}
				var line []string
				for _, m := range w.metrics {
					res.add(m.key, t.key, vals[m.key])
					line = append(line, fmt.Sprintf("%s %s %s", m.key, num(vals[m.key], m.unit), m.unit))
				}
				fmt.Fprintf(progress, "bench: %-5s run %d/%d %-13s %s\n", w.key, rep, sz.reps, t.key, strings.Join(line, ", "))
			}
		}
	}

	rep := report{
		date: time.Now().UTC(), mach: mach, sz: sz, res: res, wls: wls,
		passthrough: passthrough, proto: proto, targets: targets, spread: spread,
	}
	section := rep.markdown()
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, rep.table())
	if passthrough {
		fmt.Fprintln(stdout)
		fmt.Fprint(stdout, rep.refTable())
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, rep.verdict())
	if cfg.out != "" {
		if err := writeSection(cfg.out, section); err != nil {
			return err
		}
		fmt.Fprintf(progress, "bench: wrote %s\n", cfg.out)
	}
	return nil
}

// runOnce runs workload w on target t in a fresh directory, then removes
// it (untimed).
func runOnce(ctx context.Context, w workload, t *target, rep int, sz sizes) (map[string]float64, error) {
	// A name of its own, random: ext4 starts its search for a top
	// directory's block group at a hash of the name (see setTopDir).
	dir, err := os.MkdirTemp(t.root, fmt.Sprintf("%s-%d-", w.key, rep))
	if err != nil {
		return nil, err
	}
	settle := func() error {
		if t.settle != nil {
			if err := t.settle(ctx); err != nil {
				return err
			}
		}
		unix.Sync()
		return nil
	}
	vals, err := w.run(ctx, dir, sz, settle)
	if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
		err = fmt.Errorf("remove workload dir: %w", rerr)
	}
	return vals, err
}

// mountLoopback mounts go-fuse's plain loopback of base/backing at
// base/mnt with georep's FUSE options and cache timeouts; without
// passthrough, CAP_PASSTHROUGH is withheld from the kernel.
func mountLoopback(base string, passthrough bool) (*target, *fuse.Server, error) {
	backing, mnt := filepath.Join(base, "backing"), filepath.Join(base, "mnt")
	for _, d := range []string{base, backing, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, nil, err
		}
	}
	setTopDir(backing)
	root, err := gofs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, nil, fmt.Errorf("loopback root: %w", err)
	}
	timeout := time.Second
	mo := georepfs.MountOptions(backing, false)
	key := tLoopback
	if passthrough {
		// georep withholds passthrough; the plain loopback gets it back.
		mo.DisabledCapabilities &^= fuse.CAP_PASSTHROUGH
	} else {
		mo.DisabledCapabilities |= fuse.CAP_PASSTHROUGH
		key = tNoPT
	}
	setLive(mnt, true) // before mounting: a failed WaitMount may leave a mount
	srv, err := gofs.Mount(mnt, root, &gofs.Options{EntryTimeout: &timeout, AttrTimeout: &timeout, MountOptions: mo})
	if err != nil {
		unix.Unmount(mnt, unix.MNT_DETACH)
		setLive(mnt, false)
		return nil, nil, fmt.Errorf("mount loopback at %s: %w", mnt, err)
	}
	t := &target{key: key, root: mnt, close: func() error {
		defer setLive(mnt, false)
		return unmountServer(srv, mnt)
	}}
	return t, srv, nil
}

// unmountServer unmounts a go-fuse server as georep's Mount.Close does:
// retries while busy, then detaches lazily.
func unmountServer(srv *fuse.Server, mnt string) error {
	var err error
	for i := 0; i < 20; i++ {
		if err = srv.Unmount(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		if derr := unix.Unmount(mnt, unix.MNT_DETACH); derr != nil {
			return fmt.Errorf("unmount %s: %v; detach: %w", mnt, err, derr)
		}
	}
	srv.Wait()
	return nil
}

// mountGeorep makes a fresh node state dir and mounts georep's journaled
// file system of base/backing at base/mnt.
func mountGeorep(ctx context.Context, base string) (*target, error) {
	backing, mnt, state := filepath.Join(base, "backing"), filepath.Join(base, "mnt"), filepath.Join(base, "state")
	for _, d := range []string{base, backing, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	setTopDir(backing)
	if _, err := node.Init(state, "bench", ""); err != nil {
		return nil, fmt.Errorf("init node: %w", err)
	}
	log := slog.New(slog.DiscardHandler)
	n, err := node.Open(state, log)
	if err != nil {
		return nil, fmt.Errorf("open node: %w", err)
	}
	setLive(mnt, true)
	m, err := georepfs.New(ctx, georepfs.Options{
		Backing: backing, Mountpoint: mnt, Journal: n.Journal, Logger: log,
		BeforeMount: func(root string) error { return n.ClaimBacking(root, georepfs.HiddenDir) },
	})
	if err != nil {
		setLive(mnt, false)
		return nil, errors.Join(fmt.Errorf("mount georep at %s: %w", mnt, err), n.Close())
	}
	return &target{
		key: tGeorep, root: mnt,
		settle: func(ctx context.Context) error { return n.Journal.Flush(ctx) },
		close: func() error {
			defer setLive(mnt, false)
			merr := m.Close()
			return errors.Join(merr, n.Close())
		},
	}, nil
}

// fsTopDirFl is FS_TOPDIR_FL (chattr +T).
const fsTopDirFl = 0x00020000

// setTopDir sets the top-directory flag (chattr +T) on dir, where the file
// system has it (ext2/3/4): the Orlov allocator then spreads dir's
// subdirectories, each run's fresh directory, over block groups as it does
// top-level ones. Without it every run's files go to the same groups, and
// on ext4 without a journal an inode allocation in a group scans the
// inodes deleted there in the last minute (ext4's recently_deleted), so
// small-file creates would depend on how many files earlier runs deleted.
// It reports whether the flag is set; failing to set it is not an error.
func setTopDir(dir string) bool {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	fl, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return false
	}
	return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(fl|fsTopDirFl)) == nil
}

// finish checks that nothing under the scratch dir is still mounted, then
// removes it. A leftover mount is an error, loudly: it is detached lazily
// and the scratch dir is kept if that fails too.
func finish(scratch string, progress io.Writer) error {
	left, err := mountsUnder(scratch)
	if err != nil {
		return fmt.Errorf("check mounts: %w (scratch dir %s kept)", err, scratch)
	}
	if len(left) > 0 {
		ferr := fmt.Errorf("STILL MOUNTED at the end of the run: %s", strings.Join(left, ", "))
		fmt.Fprintf(progress, "bench: %v; detaching lazily\n", ferr)
		for _, mp := range left {
			unix.Unmount(mp, unix.MNT_DETACH)
		}
		if still, _ := mountsUnder(scratch); len(still) > 0 {
			return fmt.Errorf("%w; still mounted after detaching: %s (scratch dir %s kept)", ferr, strings.Join(still, ", "), scratch)
		}
		return errors.Join(ferr, os.RemoveAll(scratch))
	}
	if err := os.RemoveAll(scratch); err != nil {
		return fmt.Errorf("remove scratch dir: %w", err)
	}
	return nil
}

// mountsUnder lists the mount points in /proc/mounts at or under dir.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		mp := unescapeMount(f[1])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}

// unescapeMount undoes the octal escapes (\040 etc.) of the mount tables.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Workloads. All I/O is direct system calls; EINTR is retried.

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%23)
	}
	return b
}

func openFile(p string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(p, flags|unix.O_CLOEXEC, mode)
		if err != unix.EINTR {
			if err != nil {
				return -1, fmt.Errorf("open %s: %w", p, err)
			}
			return fd, nil
		}
	}
}

func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

func fsync(fd int) error {
	for {
		if err := unix.Fsync(fd); err != unix.EINTR {
			return err
		}
	}
}

// closeFd closes fd; EINTR still closes it on Linux.
func closeFd(fd int) error {
	if err := unix.Close(fd); err != nil && err != unix.EINTR {
		return err
	}
	return nil
}

// writeFile creates p and writes size bytes to it in len(buf) writes, then
// fsyncs and closes it.
func writeFile(ctx context.Context, p string, size int64, buf []byte) error {
	fd, err := openFile(p, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	for done := int64(0); done < size; done += int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			closeFd(fd)
			return err
		}
		if err := pwriteFull(fd, buf, done); err != nil {
			closeFd(fd)
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	if err := fsync(fd); err != nil {
		closeFd(fd)
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	if err := closeFd(fd); err != nil {
		return fmt.Errorf("close %s: %w", p, err)
	}
	return nil
}

// seqWrite times open, sz.seqBytes of 1 MiB writes, fsync and close.
func seqWrite(ctx context.Context, dir string, sz sizes, settle func() error) (map[string]float64, error) {
	buf := pattern(seqBlock)
	if err := settle(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := writeFile(ctx, filepath.Join(dir, "seq.dat"), sz.seqBytes, buf); err != nil {
		return nil, err
	}
	el := time.Since(t0)
	return map[string]float64{"seq": float64(sz.seqBytes) / 1e6 / el.Seconds()}, nil
}

// randWrite writes a sz.randBytes file (untimed), then times sz.randOps
// pwrites of 4 KiB at random 4 KiB-aligned offsets (fixed seed) and the
// final fsync.
func randWrite(ctx context.Context, dir string, sz sizes, settle func() error) (map[string]float64, error) {
	p := filepath.Join(dir, "rand.dat")
	if err := writeFile(ctx, p, sz.randBytes, pattern(seqBlock)); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(randSeed, randSeed))
	blocks := sz.randBytes / randBlock
	offs := make([]int64, sz.randOps)
	for i := range offs {
		offs[i] = rng.Int64N(blocks) * randBlock
	}
	buf := pattern(randBlock)
	fd, err := openFile(p, unix.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer closeFd(fd)
	if err := settle(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	for i, off := range offs {
		if i&255 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if err := pwriteFull(fd, buf, off); err != nil {
			return nil, fmt.Errorf("pwrite %s at %d: %w", p, off, err)
		}
	}
	if err := fsync(fd); err != nil {
		return nil, fmt.Errorf("fsync %s: %w", p, err)
	}
	el := time.Since(t0)
	return map[string]float64{"rand": float64(sz.randOps) / el.Seconds()}, nil
}

// smallFiles times, separately, creating sz.files files in dir (open
// O_CREAT|O_EXCL, write 100 bytes, close), stating each and unlinking
// each.
func smallFiles(ctx context.Context, dir string, sz sizes, settle func() error) (map[string]float64, error) {
	names := make([]string, sz.files)
	for i := range names {
		names[i] = filepath.Join(dir, fmt.Sprintf("f%06d", i))
	}
	data := pattern(smallSize)
	if err := settle(); err != nil {
		return nil, err
	}
	out := map[string]float64{}
	phase := func(key string, op func(p string) error) error {
		t0 := time.Now()
		for i, p := range names {
			if i&255 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := op(p); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
		}
		out[key] = float64(len(names)) / time.Since(t0).Seconds()
		return nil
	}
	if err := phase("create", func(p string) error {
		fd, err := openFile(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		if err := pwriteFull(fd, data, 0); err != nil {
			closeFd(fd)
			return fmt.Errorf("write %s: %w", p, err)
		}
		return closeFd(fd)
	}); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := phase("stat", func(p string) error {
		for {
			err := unix.Stat(p, &st)
			if err == unix.EINTR {
				continue
			}
			if err == nil && st.Size != smallSize {
				err = fmt.Errorf("size %d, want %d", st.Size, smallSize)
			}
			if err != nil {
				return fmt.Errorf("stat %s: %w", p, err)
			}
			return nil
		}
	}); err != nil {
		return nil, err
	}
	if err := phase("unlink", func(p string) error {
		for {
			err := unix.Unlink(p)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("unlink %s: %w", p, err)
			}
			return nil
		}
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// Machine description.

type machine struct {
	kernel, cpu, mem, fs string
	nproc                int
	goVersion, goFuse    string
	revision             string
}

func machineInfo(scratch string) machine {
	m := machine{kernel: "unknown", cpu: "unknown", mem: "unknown", fs: "unknown",
		nproc: runtime.NumCPU(), goVersion: runtime.Version(), goFuse: "unknown", revision: "unknown"}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.kernel = unix.ByteSliceToString(u.Release[:])
	}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.cpu = v
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		if kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64); err == nil {
			m.mem = fmt.Sprintf("%.1f GiB", kb/(1<<20))
		}
	}
	m.fs = fsType(scratch)
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/hanwen/go-fuse/v2" {
				m.goFuse = d.Version
				if d.Replace != nil {
					m.goFuse += " (replaced by " + d.Replace.Path + " " + d.Replace.Version + ")"
				}
			}
		}
	}
	if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.revision = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
			m.revision += " (with uncommitted changes)"
		}
	}
	return m
}

// procField is the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

var fsMagics = map[int64]string{
	0xEF53:     "ext2/3/4",
	0x58465342: "xfs",
	0x9123683E: "btrfs",
	0x01021994: "tmpfs",
	0x794c7630: "overlayfs",
	0x2FC12FC1: "zfs",
	0xF2F52010: "f2fs",
	0x6969:     "nfs",
	0x65735546: "fuse",
	0xFE534D42: "smb2",
}

// fsType describes the file system of dir: statfs(2)'s magic, refined by
// the mount table entry that holds dir (its type and device).
func fsType(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	magic := int64(st.Type)
	name := fsMagics[magic]
	if name == "" {
		name = "unknown"
	}
	desc := fmt.Sprintf("%s (statfs magic %#x)", name, magic)
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return desc
	}
	best, bestType, bestSrc := "", "", ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if !(mp == "/" || mp == dir || strings.HasPrefix(dir, mp+"/")) || len(mp) < len(best) {
			continue
		}
		for i, x := range f {
			if x == "-" && i+2 < len(f) {
				best, bestType, bestSrc = mp, f[i+1], unescapeMount(f[i+2])
				break
			}
		}
	}
	if bestType == "" {
		return desc
	}
	return fmt.Sprintf("%s on %s, mounted at %s (statfs magic %#x)", bestType, bestSrc, best, magic)
}

// Report.

type report struct {
	date        time.Time
	mach        machine
	sz          sizes
	res         results
	wls         []workload
	passthrough bool
	proto       string
	targets     []*target
	spread      bool // the targets' roots carry ext4's top-directory flag
}

func (r report) metrics() []metric {
	var ms []metric
	for _, w := range r.wls {
		ms = append(ms, w.metrics...)
	}
	return ms
}

// num formats a measured value: MB/s with one decimal, rates as integers.
func num(v float64, unit string) string {
	if unit == "MB/s" {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**NOT met**"
}

// check is one target of the spec on one row.
type check struct {
	what string
	ok   bool
}

func (r report) checks(m metric) []check {
	nat, loop, geo := r.res.median(m.key, tNative), r.res.median(m.key, tLoopback), r.res.median(m.key, tGeorep)
	cs := []check{{"≥ 0.9× loopback", ratio(geo, loop) >= 0.9}}
	if m.key == "seq" {
		cs = append(cs, check{"≥ 0.7× native", ratio(geo, nat) >= 0.7})
	}
	return cs
}

// table is the main table in markdown.
func (r report) table() string {
	var b strings.Builder
	b.WriteString("| workload | native | go-fuse loopback | georep | georep / loopback | georep / native | target |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---|\n")
	for _, m := range r.metrics() {
		nat, loop, geo := r.res.median(m.key, tNative), r.res.median(m.key, tLoopback), r.res.median(m.key, tGeorep)
		var cells []string
		for _, c := range r.checks(m) {
			cells = append(cells, c.what+": "+met(c.ok))
		}
		fmt.Fprintf(&b, "| %s, %s | %s | %s | %s | %.2f× | %.2f× | %s |\n", m.label, m.unit,
			num(nat, m.unit), num(loop, m.unit), num(geo, m.unit),
			ratio(geo, loop), ratio(geo, nat), strings.Join(cells, "; "))
	}
	return b.String()
}

// refTable compares georep with the loopback without passthrough.
func (r report) refTable() string {
	var b strings.Builder
	b.WriteString("| workload | go-fuse loopback, no passthrough | georep | georep / loopback (no passthrough) |\n")
	b.WriteString("|---|---:|---:|---:|\n")
	for _, m := range r.metrics() {
		ref, geo := r.res.median(m.key, tNoPT), r.res.median(m.key, tGeorep)
		fmt.Fprintf(&b, "| %s, %s | %s | %s | %.2f× |\n", m.label, m.unit, num(ref, m.unit), num(geo, m.unit), ratio(geo, ref))
	}
	return b.String()
}

func (r report) verdict() string {
	var failed []string
	n := 0
	for _, m := range r.metrics() {
		for _, c := range r.checks(m) {
			n++
			if !c.ok {
				failed = append(failed, fmt.Sprintf("%s (%s)", c.what, m.label))
			}
		}
	}
	if len(failed) == 0 {
		return fmt.Sprintf("All %d targets met.", n)
	}
	return fmt.Sprintf("%d of %d targets NOT met: %s.", len(failed), n, strings.Join(failed, "; "))
}

func (r report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("%s\n", sectionBegin)
	p("## Mount: native vs go-fuse loopback vs georep\n\n")
	p("- Date: %s\n", r.date.Format("2006-01-02 15:04 UTC"))
	p("- Machine: Linux %s; CPU %s; %d CPUs; %s memory\n", r.mach.kernel, r.mach.cpu, r.mach.nproc, r.mach.mem)
	p("- Backing file system (of the scratch dir, shared by all targets): %s\n", r.mach.fs)
	p("- Go %s; go-fuse %s; georep %s\n", r.mach.goVersion, r.mach.goFuse, r.mach.revision)
	pt := "no"
	if r.passthrough {
		pt = "yes"
	}
	p("- FUSE protocol %s; kernel offers passthrough: %s\n", r.proto, pt)
	p("- Reproduce: `make bench` (runs `go run ./bench -out BENCHMARKS.md`, as root with /dev/fuse; `-quick` for a smoke run)\n\n")
	p("Targets: **native** is a plain directory of the backing file system; **go-fuse loopback** is go-fuse's plain `LoopbackRoot` ")
	p("mounted with exactly georep's FUSE options (`fs.MountOptions`) and 1 s entry/attribute timeouts; **georep** is the journaled mount ")
	p("(`fs.New` over a fresh node state dir on the same file system). ")
	p("Each workload runs in a fresh directory, %d time(s) per target, targets interleaved per repetition; the table shows the median. ", r.sz.reps)
	p("`sync(2)` runs before every timed run (and georep's journal is drained into badger), so writeback from one run does not land in the next; no caches are dropped. ")
	p("All I/O is direct system calls from the benchmark process, which also serves the FUSE mounts. ")
	p("Sequential write times open, writes, fsync and close; random write times the pwrites and the final fsync of an existing, fully written file (fixed seed); ")
	p("small files time each phase separately. MB/s is 10⁶ bytes per second.")
	if r.spread {
		p(" Each target's root carries the top-directory flag (`chattr +T`), so each run's fresh directory lands in block groups of its own: ")
		p("on ext4 without a journal, allocating an inode in a group where many were deleted in the last minute scans those (`recently_deleted`), ")
		p("which would otherwise make small-file creates depend on the runs before them.")
	}
	p("\n\n")
	b.WriteString(r.table())
	p("\n%s\n", r.verdict())
	if r.passthrough {
		p("\nThe kernel offers FUSE passthrough, and go-fuse's plain loopback uses it when run as root: its open files are registered with the kernel, ")
		p("so their reads and writes go straight to the backing file without reaching the daemon. georep never offers passthrough, ")
		p("since every write must reach its journal, so on the data rows the loopback column above measures a different data path. ")
		p("For the cost of journaling alone, the same loopback with `CAP_PASSTHROUGH` withheld (otherwise identical options) was measured in the same run:\n\n")
		b.WriteString(r.refTable())
	}
	p("\nAll runs, in order (%s):\n\n", strings.Join(targetKeys(r.targets), ", "))
	for _, m := range r.metrics() {
		var parts []string
		for _, t := range r.targets {
			var vs []string
			for _, v := range r.res[m.key][t.key] {
				vs = append(vs, num(v, m.unit))
			}
			parts = append(parts, t.key+" "+strings.Join(vs, "/"))
		}
		p("- %s (%s): %s\n", m.label, m.unit, strings.Join(parts, "; "))
	}
	p("%s\n", sectionEnd)
	return b.String()
}

func targetKeys(ts []*target) []string {
	var ks []string
	for _, t := range ts {
		ks = append(ks, t.key)
	}
	return ks
}

// writeSection writes section into the file at path: it replaces this
// benchmark's section if there is one and keeps everything else.
func writeSection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	out := splice(string(old), section)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}

// splice replaces the section of doc that section's first line (its
// begin marker) names — from that marker to the first end marker after
// it, or, lacking one, to the next section or the end — with section, or
// appends section if doc has none. Other sections and text are kept as
// they are.
func splice(doc, section string) string {
	if strings.TrimSpace(doc) == "" {
		return "# Benchmarks\n\n" + section
	}
	begin, _, _ := strings.Cut(section, "\n")
	begin = strings.TrimSpace(begin)
	lines := strings.SplitAfter(doc, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == begin {
			start = i
			break
		}
	}
	if start < 0 {
		if !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		return doc + "\n" + section
	}
	end := len(lines)
	for i := start + 1; i < len(lines); i++ {
		t := strings.TrimSpace(lines[i])
		if t == sectionEnd {
			end = i + 1
			break
		}
		if strings.HasPrefix(t, sectionPrefix) {
			end = i
			break
		}
	}
	return strings.Join(lines[:start], "") + section + strings.Join(lines[end:], "")
}
