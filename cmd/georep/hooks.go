package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
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
