package main

import (
	"bufio"
	"context"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unitFile reads dist/georep@.service into key → values.
func unitFile(t *testing.T) (map[string][]string, string) {
	t.Helper()
	b, err := os.ReadFile("../../dist/georep@.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unit line %q", line)
		}
		keys[k] = append(keys[k], v)
	}
	return keys, string(b)
}

// envFile reads dist/georep.env.example.
func envFile(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../dist/georep.env.example")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	return env
}

// TestSystemdUnit: the unit's ExecStart, with the example environment
// expanded as systemd does (${X} one word, $X split on spaces), is a
// daemon command line whose every flag exists and parses; the unit waits
// for the daemon's READY=1; systemd-analyze accepts it where present.
func TestSystemdUnit(t *testing.T) {
	keys, text := unitFile(t)
	env := envFile(t)
	if got := keys["Type"]; len(got) != 1 || got[0] != "notify" {
		t.Errorf("Type=%v, want notify", got)
	}
	exec0 := keys["ExecStart"]
	if len(exec0) != 1 {
		t.Fatalf("ExecStart: %v", exec0)
	}
	var args []string
	for _, w := range strings.Fields(exec0[0]) {
		switch {
		case strings.HasPrefix(w, "${") && strings.HasSuffix(w, "}"):
			v, ok := env[w[2:len(w)-1]]
			if !ok {
				t.Fatalf("ExecStart uses %s, which the example environment does not set", w)
			}
			args = append(args, v)
		case strings.HasPrefix(w, "$"):
			v, ok := env[w[1:]]
			if !ok {
				t.Fatalf("ExecStart uses %s, which the example environment does not set", w)
			}
			args = append(args, strings.Fields(v)...)
		default:
			args = append(args, w)
		}
	}
	if filepath.Base(args[0]) != "georep" || args[1] != "daemon" {
		t.Fatalf("ExecStart runs %v", args[:2])
	}
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range daemonCommand().Flags {
		if err := f.Apply(fs); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Parse(args[2:]); err != nil {
		t.Fatalf("daemon flags of the unit %v: %v", args[2:], err)
	}
	if fs.NArg() != 0 {
		t.Errorf("ExecStart passes arguments %v", fs.Args())
	}
	for _, name := range []string{"state", "backing", "mount"} {
		if fs.Lookup(name).Value.String() == "" {
			t.Errorf("the unit does not give --%s", name)
		}
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		// Verify a copy whose binary and environment file exist here.
		dir := t.TempDir()
		self, _ := os.Executable()
		envPath := filepath.Join(dir, "vol.env")
		os.WriteFile(envPath, []byte("GEOREP_STATE=/x\nGEOREP_BACKING=/y\nGEOREP_MOUNT=/z\nGEOREP_FLAGS=\n"), 0o600)
		u := strings.ReplaceAll(text, "/usr/local/bin/georep", self)
		u = strings.ReplaceAll(u, "/etc/georep/%i.env", envPath)
		unit := filepath.Join(dir, "georep@vol.service")
		os.WriteFile(unit, []byte(u), 0o644)
		out, err := exec.Command(sa, "verify", "--man=no", unit).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
}

// TestNotifyReady: under systemd (NOTIFY_SOCKET) the daemon sends
// READY=1 when it serves.
func TestNotifyReady(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	ctx, cancel := context.WithCancel(context.Background())
	signalReady(ctx)
	buf := make([]byte, 64)
	l.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := l.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("notify: %q %v", buf[:n], err)
	}
	cancel()
	n, err = l.Read(buf)
	if err != nil || string(buf[:n]) != "STOPPING=1" {
		t.Fatalf("notify at stop: %q %v", buf[:n], err)
	}
}
