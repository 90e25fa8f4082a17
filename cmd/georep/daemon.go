package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/georep/georep/fs"
	"github.com/georep/georep/node"
	gsync "github.com/georep/georep/sync"
)

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:      "daemon",
		Usage:     "serve the volume: mount the backing dir through the journal",
		UsageText: "georep daemon --state DIR --backing DIR --mount DIR [--primary]",
		Description: "The mount may be the backing dir itself (in-place mount). A node started\n" +
			"without --primary is a secondary: its mount is read-only for applications.\n" +
			"SIGTERM or SIGINT unmounts cleanly; after SIGKILL, start it again: the dead\n" +
			"mount is cleared and the journal recovered.",
		Flags: []cli.Flag{
			stateFlag(),
			&cli.StringFlag{Name: "backing", Usage: "the directory that holds the volume's files"},
			&cli.StringFlag{Name: "mount", Usage: "where applications see the volume (may equal --backing)"},
			&cli.BoolFlag{Name: "primary", Usage: "accept writes from applications"},
			&cli.StringFlag{Name: "listen", Usage: "HOST:PORT peers connect to (default: the address given at init)"},
			&cli.StringFlag{Name: "schedule", Usage: "replicate on a cron schedule (e.g. \"0 * * * *\") instead of continuously"},
			&cli.StringFlag{Name: "pre-sync-hook", Usage: "command run before each scheduled or requested sync (primary)"},
			&cli.StringFlag{Name: "post-apply-hook", Usage: "command run after each applied batch (secondary)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.BoolFlag{Name: "debug-fuse", Usage: "log every FUSE request"},
		},
		Action: runDaemon,
	}
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("bad --log-level %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, usagef("bad --log-format %q: text or json", format)
}

func runDaemon(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("daemon takes no arguments")
	}
	var dir, backing, mount string
	var err error
	for _, f := range []struct {
		name string
		dst  *string
	}{{"state", &dir}, {"backing", &backing}, {"mount", &mount}} {
		if *f.dst, err = need(c, f.name); err != nil {
			return err
		}
	}
	if backing, err = filepath.Abs(backing); err != nil {
		return fmt.Errorf("backing dir: %w", err)
	}
	log, err := newLogger(c.String("log-format"), c.String("log-level"))
	if err != nil {
		return err
	}
	// The mount creates files with the modes applications ask for (the
	// kernel has applied their umask already).
	syscall.Umask(0)
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	n, err := node.Open(dir, log)
	if err != nil {
		return err
	}
	defer n.Close()
	primary := c.Bool("primary")
	cert, err := gsync.LoadCertificate(dir)
	if err != nil {
		return err
	}
	listen := c.String("listen")
	if listen == "" {
		listen = n.Identity.Listen
	}
	m, err := fs.New(ctx, fs.Options{
		Backing:    backing,
		Mountpoint: mount,
		Journal:    n.Journal,
		ReadOnly:   !primary,
		BeforeMount: func(root string) error {
			if err := n.ClaimBacking(root, fs.HiddenDir); err != nil {
				return err
			}
			if primary {
				return nil
			}
			// A batch a stop interrupted is finished before anyone
			// can read the replica.
			return gsync.RecoverStaged(ctx, root, n.DB, dir, log)
		},
		Logger: log,
		Debug:  c.Bool("debug-fuse"),
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := m.Close(); err != nil {
			log.Error("unmount", "err", err)
		}
	}()
	role := "secondary"
	if primary {
		role = "primary"
	}
	hk := newHooks(dir, c.String("pre-sync-hook"), c.String("post-apply-hook"),
		[]string{"GEOREP_MOUNT=" + m.Mountpoint(), "GEOREP_BACKING=" + backing, "GEOREP_STATE=" + dir, "GEOREP_ROLE=" + role})
	cfg := gsync.Config{
		Self: n.Identity, Cert: cert, StateDir: dir, DB: n.DB, Journal: n.Journal, Index: n.Index,
		Root: m.BackingFD(), Primary: primary, Listen: listen, Schedule: c.String("schedule"), Logger: log,
	}
	if primary {
		cfg.Source = m.Volume
	} else {
		cfg.Sink = m.Volume
	}
	if hk.preSync != "" {
		cfg.PreSync = func(ctx context.Context) error { return hk.run(ctx, "pre-sync", hk.preSync) }
	}
	if hk.postApply != "" {
		cfg.PostApply = func() {
			if err := hk.run(ctx, "post-apply", hk.postApply); err != nil {
				log.Warn("post-apply hook failed", "err", err)
			}
		}
	}
	eng, err := gsync.New(cfg)
	if err != nil {
		return err
	}
	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(ctx) }()
	mode := "continuous"
	if s := c.String("schedule"); s != "" {
		mode = "schedule " + s
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st := Status{
			Node: n.Identity.Name, ID: n.Identity.ID, Role: role,
			Epoch: n.Journal.Epoch(), Seq: n.Journal.Seq(),
			Mount: m.Mountpoint(), Backing: backing, PID: os.Getpid(), Volume: eng.Volume(), Mode: mode,
			Peers: []PeerStatus{}, Hooks: hk.status(), Failback: FailbackStatus{State: "none"},
		}
		if rc := eng.Receiver(); rc != nil {
			rs, tree := rc.State()
			st.Seq = rs.Cursor
			st.Epoch = max(st.Epoch, rs.Epoch)
			st.Replica = &ReplicaStatus{CursorEpoch: rs.CursorEpoch, Cursor: rs.Cursor, Applied: rfc3339(rs.Applied),
				Full: rs.Full, Repair: len(rs.Repair)}
			if tree.Running {
				st.Replica.FullSync = &tree
			}
		}
		for _, p := range eng.Peers(r.Context()) {
			ps := PeerStatus{Name: p.Name, Addr: p.Addr, State: p.State, StateSince: rfc3339(p.StateSince),
				AckedSeq: p.AckedSeq, LastSynced: rfc3339(p.LastSynced), LagSeconds: p.LagSeconds,
				PendingEntries: p.PendingEntries, PendingBytes: p.PendingBytes, BytesShipped: p.BytesShipped, Error: p.Error}
			if p.Tree.Running {
				tree := p.Tree
				ps.FullSync = &tree
			}
			st.Peers = append(st.Peers, ps)
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /v1/journal", serveJournal(n.Journal))
	mux.HandleFunc("POST /v1/sync", func(w http.ResponseWriter, r *http.Request) {
		target, err := eng.Sync(r.Context())
		if err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]uint64{"target": target})
	})
	mux.HandleFunc("GET /v1/verify", func(w http.ResponseWriter, r *http.Request) {
		diffs, err := eng.Verify(r.Context(), r.URL.Query().Get("peer"))
		if err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, diffs)
	})
	stopControl, err := serveControl(ctx, dir, mux, log)
	if err != nil {
		return err
	}
	defer stopControl()

	gone := make(chan struct{})
	go func() { m.Wait(); close(gone) }()
	go cutSessions(ctx, m.Volume, log)
	log.Info("georep daemon ready", "node", n.Identity.Name, "role", role,
		"backing", backing, "mount", m.Mountpoint(), "seq", n.Journal.Seq())
	select {
	case <-ctx.Done():
		log.Info("stopping: unmounting", "mount", m.Mountpoint())
	case <-gone:
		return fmt.Errorf("the mount at %s went away (unmounted from outside?)", m.Mountpoint())
	case err := <-engDone:
		if err != nil {
			return err
		}
		return nil
	}
	stop()
	<-engDone
	return nil
}

// cutSessions ends open write sessions every second, so a file kept open
// and written for a long time still has its ranges named promptly.
func cutSessions(ctx context.Context, v *fs.Volume, log *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := v.Cut(); err != nil {
				log.Error("cutting write sessions", "err", err)
			}
		}
	}
}
