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
	m, err := fs.New(ctx, fs.Options{
		Backing:    backing,
		Mountpoint: mount,
		Journal:    n.Journal,
		ReadOnly:   !primary,
		BeforeMount: func(root string) error {
			return n.ClaimBacking(root, fs.HiddenDir)
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
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, Status{
			Node: n.Identity.Name, ID: n.Identity.ID, Role: role,
			Epoch: n.Journal.Epoch(), Seq: n.Journal.Seq(),
			Mount: m.Mountpoint(), Backing: backing, PID: os.Getpid(),
			Peers: []PeerStatus{}, Failback: FailbackStatus{State: "none"},
		})
	})
	mux.HandleFunc("GET /v1/journal", serveJournal(n.Journal))
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
	}
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
