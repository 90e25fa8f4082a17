package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/georep/georep/web"
)

// hooks runs the operator's pre-sync and post-apply commands, keeping
// their output in one log in the state dir that status points to.
type hooks struct {
	log       string
	preSync   string
	postApply string
	env       []string
	role      func() string // the node's role when a hook runs

	mu      sync.Mutex
	lastErr string
	running sync.Mutex // one hook at a time, so their logs do not interleave
}

func newHooks(stateDir, preSync, postApply string, env []string, role func() string) *hooks {
	return &hooks{log: filepath.Join(stateDir, "hooks.log"), preSync: preSync, postApply: postApply, env: env, role: role}
}

// run runs one hook through sh -c with its output appended to the log.
func (h *hooks) run(ctx context.Context, name, cmdline string) error {
	h.running.Lock()
	defer h.running.Unlock()
	f, err := os.OpenFile(h.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open hook log: %w", err)
	}
	defer f.Close()
	start := time.Now()
	fmt.Fprintf(f, "=== %s %s: %s\n", start.UTC().Format(time.RFC3339), name, cmdline)
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cmdline)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(os.Environ(), h.env...), "GEOREP_ROLE="+h.role())
	err = cmd.Run()
	status := "ok"
	if err != nil {
		status = err.Error()
		err = fmt.Errorf("%s hook: %w (output in %s)", name, err, h.log)
	}
	fmt.Fprintf(f, "=== %s %s done in %s: %s\n", time.Now().UTC().Format(time.RFC3339), name, time.Since(start).Round(time.Millisecond), status)
	h.mu.Lock()
	if err != nil {
		h.lastErr = err.Error()
	} else {
		h.lastErr = ""
	}
	h.mu.Unlock()
	return err
}

func (h *hooks) status() HookStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := HookStatus{PreSync: h.preSync, PostApply: h.postApply, LastError: h.lastErr}
	if h.preSync != "" || h.postApply != "" {
		st.Log = h.log
	}
	return st
}

// page is the hooks as the web page shows them, with the log's tail.
func (h *hooks) page() web.Hooks {
	st := h.status()
	out := web.Hooks{PreSync: st.PreSync, PostApply: st.PostApply, Log: st.Log, LastError: st.LastError}
	if st.Log != "" {
		out.Tail = tailLines(st.Log, hookTailLines, hookTailBytes)
	}
	return out
}

// The status page shows the hook log's last lines.
const (
	hookTailLines = 30
	hookTailBytes = 16 << 10
)

// tailLines returns the last n lines of the file at path, reading at most
// limit bytes from its end.
func tailLines(path string, n int, limit int64) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(fi.Size()-limit, 0)
	buf := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(buf, off)
	buf = buf[:k]
	if off > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:] // a partial first line
		}
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	return lines[max(len(lines)-n, 0):]
}
