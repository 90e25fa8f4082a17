package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/georep/georep/node"
)

// readyFDEnv tells a daemon started by --detach which descriptor to
// write "ready" to once it serves.
const readyFDEnv = "GEOREP_READY_FD"

// detachTimeout bounds how long daemon --detach waits for the daemon to
// serve (a full start-up check of a restarting primary takes ≤ 3s).
const detachTimeout = 2 * time.Minute

// detach starts this daemon command again in the background (its own
// session, output appended to the log file) and returns once it serves,
// or with the reason it did not start.
func detach(c *cli.Context, stateDir string) error {
	// The log goes into the state dir: it must be one.
	if _, err := node.Load(stateDir); err != nil {
		return err
	}
	logPath := c.String("log-file")
	if logPath == "" {
		logPath = filepath.Join(stateDir, "daemon.log")
	}
	if abs, err := filepath.Abs(logPath); err == nil {
		logPath = abs
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("daemon log: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	defer r.Close()
	var args []string
	for _, a := range os.Args[1:] {
		switch strings.TrimLeft(a, "-") {
		case "detach", "detach=true", "detach=1":
			continue
		}
		args = append(args, a)
	}
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Args[0] = os.Args[0] // so ps and pgrep show "georep daemon …"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start daemon: %w", err)
	}
	w.Close()
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		ready <- line == "ready\n"
	}()
	select {
	case ok := <-ready:
		if ok {
			fmt.Fprintf(c.App.Writer, "georep daemon started (pid %d); log: %s\n", cmd.Process.Pid, logPath)
			cmd.Process.Release()
			return nil
		}
	case <-time.After(detachTimeout):
		cmd.Process.Kill()
	}
	cmd.Wait()
	return fmt.Errorf("the daemon did not start: %s (log: %s)", lastLogError(logPath), logPath)
}

// lastLogError finds why a detached daemon stopped: the last line of its
// log (the one-line reason it printed on exit).
func lastLogError(path string) string {
	lines := tailLines(path, 1, 8<<10)
	if len(lines) == 0 {
		return "it exited without a word"
	}
	return strings.TrimPrefix(lines[0], "georep: ")
}

// signalReady tells whoever started the daemon that it serves: daemon
// --detach through its pipe, systemd (Type=notify) through NOTIFY_SOCKET.
func signalReady(ctx context.Context) {
	if fd := os.Getenv(readyFDEnv); fd == "3" {
		os.Unsetenv(readyFDEnv)
		f := os.NewFile(3, "ready")
		f.WriteString("ready\n")
		f.Close()
	}
	sdNotify("READY=1")
	context.AfterFunc(ctx, func() { sdNotify("STOPPING=1") })
}

// sdNotify sends state to systemd's notify socket, if there is one.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}
