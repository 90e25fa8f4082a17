package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// bin is the georep binary built for this test run.
var bin string

func TestMain(m *testing.M) {
	if os.Getuid() != 0 {
		fmt.Println("integration tests need root; skipping")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "georep-bin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "georep")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/georep").CombinedOutput()
	if err != nil {
		fmt.Printf("build georep: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is the outcome of one georep CLI run.
type result struct {
	code           int
	stdout, stderr string
}

func georep(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run georep %v: %v", args, err)
	}
	return result{code, o.String(), e.String()}
}

// mustGeorep runs georep and fails the test unless it exits 0.
func mustGeorep(t testing.TB, args ...string) string {
	t.Helper()
	r := georep(t, args...)
	if r.code != 0 {
		t.Fatalf("georep %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

// daemon is a running `georep daemon`.
type daemon struct {
	t                     testing.TB
	state, backing, mount string
	args                  []string
	env                   []string // added to the daemon's environment
	mayCrash              bool     // the daemon may kill itself before it is ready
	cmd                   *exec.Cmd
	log                   *bytes.Buffer
	exited                chan struct{}
}

// nodeDirs makes a fresh node: state dir (initialized), backing dir and
// mount point under a temp dir.
func nodeDirs(t testing.TB, name string) (state, backing, mount string) {
	t.Helper()
	dir := t.TempDir()
	state, backing, mount = filepath.Join(dir, "state"), filepath.Join(dir, "backing"), filepath.Join(dir, "mnt")
	for _, d := range []string{backing, mount} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustGeorep(t, "init", "--state", state, "--name", name)
	return
}

// startDaemon starts georep daemon and waits until it answers status.
func startDaemon(t testing.TB, state, backing, mount string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, state: state, backing: backing, mount: mount,
		args: append([]string{"daemon", "--state", state, "--backing", backing, "--mount", mount}, extra...)}
	d.start()
	t.Cleanup(d.stop)
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.log = &bytes.Buffer{}
	d.cmd = exec.Command(bin, d.args...)
	d.cmd.Env = append(os.Environ(), d.env...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.exited = make(chan struct{})
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("start daemon: %v", err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			if d.mayCrash {
				return
			}
			d.t.Fatalf("daemon exited at start: %s", d.log.String())
		default:
		}
		if r := georep(d.t, "status", "--state", d.state, "--json"); r.code == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("daemon not ready after 20s: %s", d.log.String())
}

// kill sends SIGKILL and waits for the process to be gone. The FUSE mount
// is left dead, as after a crash.
func (d *daemon) kill() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

// restart starts the daemon again with the same arguments.
func (d *daemon) restart() { d.start() }

// stop ends the daemon with SIGTERM (SIGKILL after 10s) and makes sure no
// mount is left behind, even after a crash.
func (d *daemon) stop() {
	if d.cmd != nil && d.cmd.ProcessState == nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			d.t.Errorf("daemon ignored SIGTERM for 10s")
			d.kill()
		}
	}
	if mounted(d.mount) {
		unix.Unmount(d.mount, unix.MNT_DETACH)
		if !d.t.Failed() && d.cmd.ProcessState != nil && d.cmd.ProcessState.ExitCode() == 0 {
			d.t.Errorf("daemon exited 0 but left %s mounted", d.mount)
		}
	}
}

// status returns the daemon's status.
func (d *daemon) status() map[string]any {
	d.t.Helper()
	var st map[string]any
	if err := json.Unmarshal([]byte(mustGeorep(d.t, "status", "--state", d.state, "--json")), &st); err != nil {
		d.t.Fatal(err)
	}
	return st
}

func (d *daemon) seq() uint64 { return uint64(d.status()["seq"].(float64)) }

// record is the part of a journal line the tests read.
type record struct {
	Seq     uint64     `json:"seq"`
	Epoch   uint64     `json:"epoch"`
	Time    time.Time  `json:"time"`
	Op      string     `json:"op"`
	Path    string     `json:"path"`
	NewPath string     `json:"new_path"`
	Ranges  [][2]int64 `json:"ranges"`
	Whole   bool       `json:"whole"`
	Open    bool       `json:"open"`
}

// journal lists the records after since.
func journalSince(t testing.TB, state string, since uint64) []record {
	t.Helper()
	out := mustGeorep(t, "journal", "--state", state, "--json", "--since", fmt.Sprint(since))
	var recs []record
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("journal line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// mounted reports whether dir is in the mount table.
func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}
