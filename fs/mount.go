package fs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/georep/georep/journal"
)

// Options configure a mount.
type Options struct {
	// Backing is the directory holding the volume's files. It may equal
	// Mountpoint (in-place mount).
	Backing    string
	Mountpoint string
	Journal    *journal.Journal
	// ReadOnly starts the mount in read-only mode (a secondary).
	ReadOnly bool
	// Frozen starts the mount frozen (mutating calls block until Thaw):
	// a primary that restarts first asks its peers whether it still is.
	Frozen bool
	// CacheTimeout is the kernel's entry and attribute cache time. Only the
	// mount changes the backing dir on a primary, so caching is safe there.
	CacheTimeout time.Duration
	// BeforeMount, if set, runs with the path through which the backing
	// dir is reached once it is open, before anything is mounted.
	BeforeMount func(backingRoot string) error
	// OnThaw, if set, is told how long each freeze held mutating calls
	// (from the outermost Freeze, or the start of a Frozen mount, to the
	// Thaw that ends it). It must not block.
	OnThaw func(held time.Duration)
	Logger *slog.Logger
	Debug  bool
}

// Mount is a live journaled mount.
type Mount struct {
	Volume     *Volume
	server     *fuse.Server
	backing    *os.File
	mountpoint string
	log        *slog.Logger
}

// ErrMountpointInUse is returned when another file system is already
// mounted, alive, at the mount point.
var ErrMountpointInUse = errors.New("mount point in use")

// New mounts the journaled file system. The backing dir is opened before
// mounting, and reached through that descriptor afterwards, so the mount
// may cover it (in-place mount). A dead FUSE mount left at the mount point
// by a killed daemon is detached first: for an in-place mount before
// anything else (it covers the backing dir), otherwise only just before
// the new mount goes up, so that writers keep getting ENOTCONN rather
// than writing into the bare directory underneath while the daemon
// starts.
func New(ctx context.Context, o Options) (*Mount, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CacheTimeout == 0 {
		o.CacheTimeout = time.Second
	}
	mnt, err := filepath.Abs(o.Mountpoint)
	if err != nil {
		return nil, fmt.Errorf("mount point %q: %w", o.Mountpoint, err)
	}
	dead := isDead(mnt)
	if dead && isDead(o.Backing) {
		// The dead mount covers the backing dir (in-place mount).
		if err := ClearStale(mnt, o.Logger); err != nil {
			return nil, err
		}
		dead = false
	}
	if !dead {
		if err := checkDir(mnt, "mount point"); err != nil {
			return nil, err
		}
		// The mount table holds resolved paths.
		if real, err := filepath.EvalSymlinks(mnt); err == nil {
			mnt = real
		}
		if live, err := IsFuseMount(mnt); err != nil {
			return nil, err
		} else if live {
			return nil, fmt.Errorf("%w: %s already has a FUSE file system mounted", ErrMountpointInUse, mnt)
		}
	}
	back, err := OpenBacking(o.Backing)
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(back.Fd()), &st); err != nil {
		back.Close()
		return nil, fmt.Errorf("stat backing dir: %w", err)
	}
	rootPath := fmt.Sprintf("/proc/self/fd/%d", back.Fd())
	if o.BeforeMount != nil {
		if err := o.BeforeMount(rootPath); err != nil {
			back.Close()
			return nil, err
		}
	}
	v := &Volume{j: o.Journal, log: o.Logger.With("component", "fs"), open: map[*Node]struct{}{}, asRoot: os.Getuid() == 0}
	v.gate.init()
	v.gate.setReadOnly(o.ReadOnly)
	v.gate.onThaw = o.OnThaw
	if o.Frozen {
		v.gate.frozen, v.gate.frozenAt = 1, time.Now()
	}
	lroot := &gofs.LoopbackRoot{Path: rootPath, Dev: uint64(st.Dev)}
	rootNode := &Node{LoopbackNode: &gofs.LoopbackNode{RootData: lroot}, vol: v}
	lroot.RootNode = rootNode
	v.root = rootNode.EmbeddedInode()

	timeout := o.CacheTimeout
	opts := &gofs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		MountOptions: MountOptions(o.Backing, o.Debug),
	}
	if dead {
		if err := ClearStale(mnt, o.Logger); err != nil {
			back.Close()
			return nil, err
		}
	}
	warnHidden(mnt, &st, o.Logger)
	server, err := gofs.Mount(mnt, rootNode, opts)
	if err != nil {
		back.Close()
		return nil, fmt.Errorf("mount %s: %w", mnt, err)
	}
	if err := server.WaitMount(); err != nil {
		server.Unmount()
		back.Close()
		return nil, fmt.Errorf("wait for mount %s: %w", mnt, err)
	}
	return &Mount{Volume: v, server: server, backing: back, mountpoint: mnt, log: v.log}, nil
}

// MountOptions are the FUSE options of a georep mount; the benchmark uses
// them for the plain loopback too, so the two differ only in journaling.
func MountOptions(backing string, debug bool) fuse.MountOptions {
	return fuse.MountOptions{
		AllowOther:  true,
		Options:     []string{"default_permissions"},
		FsName:      backing,
		Name:        "georep",
		DirectMount: true,
		MaxWrite:    1 << 20,
		EnableLocks: true,
		Debug:       debug,
		// Passthrough would let the kernel write open files directly,
		// around the journal. The file handles offer no passthrough fd
		// either; withholding the capability makes it a mount property.
		DisabledCapabilities: fuse.CAP_PASSTHROUGH,
	}
}

// OpenBacking opens the backing dir, with a clear error when it is not a
// usable directory.
func OpenBacking(dir string) (*os.File, error) {
	if err := checkDir(dir, "backing dir"); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("open backing dir %s: %w", dir, err)
	}
	return f, nil
}

func checkDir(dir, what string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s %s does not exist", what, dir)
		}
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s is not a directory", what, dir)
	}
	return nil
}

// isDead reports whether a dead FUSE mount is at dir ("transport endpoint
// is not connected"): statfs is never answered from the kernel's caches,
// unlike stat, so it reaches the daemon and sees a dead connection.
func isDead(dir string) bool {
	var st unix.Statfs_t
	err := unix.Statfs(dir, &st)
	return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED)
}

// warnHidden warns when a mount point that is not the backing dir (whose
// stat is backing) holds entries: the mount hides them (an application
// wrote there while no daemon was mounted, and georep never saw it).
func warnHidden(mnt string, backing *syscall.Stat_t, log *slog.Logger) {
	var st syscall.Stat_t
	if syscall.Stat(mnt, &st) != nil || st.Dev == backing.Dev && st.Ino == backing.Ino {
		return
	}
	f, err := os.Open(mnt)
	if err != nil {
		return
	}
	names, _ := f.Readdirnames(5)
	f.Close()
	if len(names) > 0 {
		log.Error("the mount point holds entries the mount now hides: they were written while no georep daemon was mounted there, and are not in the volume",
			"mount", mnt, "entries", names)
	}
}

// ClearStale detaches a dead FUSE mount at dir ("transport endpoint is not
// connected"), which a daemon killed with SIGKILL leaves behind.
func ClearStale(dir string, log *slog.Logger) error {
	if !isDead(dir) {
		return nil
	}
	log.Warn("detaching a dead FUSE mount left by a previous daemon", "mount", dir)
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach dead mount at %s: %w", dir, err)
	}
	return nil
}

// IsFuseMount reports whether a FUSE file system is mounted at dir.
func IsFuseMount(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source sopts
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMount(fields[4]) != dir {
			continue
		}
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && strings.HasPrefix(fields[i+1], "fuse") {
				return true, nil
			}
		}
	}
	return false, sc.Err()
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// BackingPath is the path through which the daemon reaches the backing
// dir (valid while the mount lives).
func (m *Mount) BackingPath() string { return fmt.Sprintf("/proc/self/fd/%d", m.backing.Fd()) }

// BackingFD is the descriptor of the backing dir, valid until Close; the
// receiver of a secondary applies beneath it.
func (m *Mount) BackingFD() int { return int(m.backing.Fd()) }

// Mountpoint is the absolute mount point.
func (m *Mount) Mountpoint() string { return m.mountpoint }

// Wait blocks until the file system is unmounted.
func (m *Mount) Wait() { m.server.Wait() }

// Close ends open write sessions and unmounts, lazily if the mount is
// busy, then closes the backing dir.
func (m *Mount) Close() error {
	cerr := m.Volume.Cut()
	var uerr error
	for i := 0; i < 20; i++ {
		if uerr = m.server.Unmount(); uerr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if uerr != nil {
		m.log.Warn("mount busy; detaching it lazily", "mount", m.mountpoint, "err", uerr)
		if err := unix.Unmount(m.mountpoint, unix.MNT_DETACH); err == nil {
			uerr = nil
		}
		m.server.Wait()
	}
	berr := m.backing.Close()
	return errors.Join(cerr, uerr, berr)
}
