package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/georep/georep/failover"
	"github.com/georep/georep/fs"
	"github.com/georep/georep/node"
	gsync "github.com/georep/georep/sync"
	"github.com/georep/georep/web"
)

func daemonCommand() *cli.Command {
	return &cli.Command{
		Name:      "daemon",
		Usage:     "serve the volume: mount the backing dir through the journal",
		UsageText: "georep daemon --state DIR --backing DIR --mount DIR [--primary] [--http HOST:PORT] [--detach]",
		Description: "The mount may be the backing dir itself (in-place mount). --primary gives\n" +
			"a new node the primary role; without it a new node is a secondary, whose mount\n" +
			"is read-only for applications. Once a node has a role (failover and failback\n" +
			"change it) the persisted role wins over the flag. A primary that restarts\n" +
			"holds writes (they block) for up to 3s while it asks its peers whether another\n" +
			"node became primary meanwhile; if one did, it comes up fenced (EROFS).\n" +
			"SIGTERM or SIGINT unmounts cleanly; after SIGKILL, start it again: the dead\n" +
			"mount is cleared and the journal recovered.\n\n" +
			"--http serves the status page (with the takeover form), /metrics and /healthz.\n" +
			"The takeover password travels in the form: serve it on 127.0.0.1, over\n" +
			"--http-tls-cert/--http-tls-key, or behind a TLS proxy. --detach returns once\n" +
			"the daemon serves (output appended to --log-file, default STATE/daemon.log).\n" +
			"Under systemd (Type=notify) the daemon reports READY=1 when it serves.",
		Flags: []cli.Flag{
			stateFlag(),
			&cli.StringFlag{Name: "backing", Usage: "the directory that holds the volume's files"},
			&cli.StringFlag{Name: "mount", Usage: "where applications see the volume (may equal --backing)"},
			&cli.BoolFlag{Name: "primary", Usage: "a new node starts as the primary (accepts writes from applications)"},
			&cli.StringFlag{Name: "listen", Usage: "HOST:PORT peers connect to (default: the address given at init)"},
			&cli.StringFlag{Name: "schedule", Usage: "replicate on a cron schedule (e.g. \"0 * * * *\") instead of continuously"},
			&cli.StringFlag{Name: "pre-sync-hook", Usage: "command run before each scheduled or requested sync (primary)"},
			&cli.StringFlag{Name: "post-apply-hook", Usage: "command run after each applied batch (secondary)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.BoolFlag{Name: "debug-fuse", Usage: "log every FUSE request"},
			&cli.StringFlag{Name: "http", Usage: "serve the status page, /metrics and /healthz on HOST:PORT"},
			&cli.StringFlag{Name: "http-tls-cert", Usage: "serve --http over TLS with this certificate (PEM)"},
			&cli.StringFlag{Name: "http-tls-key", Usage: "the key of --http-tls-cert (PEM)"},
			&cli.StringFlag{Name: "takeover-password-file", Usage: "set the takeover password from this file's first line (only its hash is stored)"},
			&cli.BoolFlag{Name: "detach", Usage: "run in the background; return once the daemon serves"},
			&cli.StringFlag{Name: "log-file", Usage: "with --detach: where the daemon's log goes (default STATE/daemon.log)"},
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
	if (c.String("http-tls-cert") == "") != (c.String("http-tls-key") == "") {
		return usagef("--http-tls-cert and --http-tls-key go together")
	}
	if c.String("http-tls-cert") != "" && c.String("http") == "" {
		return usagef("--http-tls-cert needs --http")
	}
	if addr := c.String("http"); addr != "" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return usagef("bad --http %q: want HOST:PORT", addr)
		}
	}
	// The password file is read now (a bad one fails at once, also with
	// --detach); its hash is stored once the state dir is open.
	var password []byte
	if pf := c.String("takeover-password-file"); pf != "" {
		if password, err = web.ReadPasswordFile(pf); err != nil {
			return err
		}
	}
	if c.Bool("detach") {
		return detach(c, dir)
	}
	// The status page's listener first: a port in use or a bad
	// certificate fails the start before anything is mounted.
	var httpLn net.Listener
	if addr := c.String("http"); addr != "" {
		if httpLn, err = web.Listen(addr, c.String("http-tls-cert"), c.String("http-tls-key")); err != nil {
			return err
		}
		defer httpLn.Close()
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
	if password != nil {
		if err := web.SetPassword(dir, password); err != nil {
			return err
		}
	}
	cert, err := gsync.LoadCertificate(dir)
	if err != nil {
		return err
	}
	listen := c.String("listen")
	if listen == "" {
		listen = n.Identity.Listen
	}
	ctl, err := failover.Load(failover.Options{Self: n.Identity, DB: n.DB, Journal: n.Journal, Primary: c.Bool("primary"), Logger: log})
	if err != nil {
		return err
	}
	role := ctl.Role()
	peers, err := node.Peers(dir)
	if err != nil {
		return err
	}
	// A primary that restarts holds writes until its peers told it that
	// no other node became primary meanwhile (failover.Controller.Run).
	frozen := role == gsync.RolePrimary && len(peers) > 0
	metrics := web.NewMetrics()
	m, err := fs.New(ctx, fs.Options{
		Backing:    backing,
		Mountpoint: mount,
		Journal:    n.Journal,
		ReadOnly:   role != gsync.RolePrimary,
		Frozen:     frozen,
		BeforeMount: func(root string) error {
			if err := n.ClaimBacking(root, fs.HiddenDir); err != nil {
				return err
			}
			// A batch a stop interrupted is finished before anyone
			// can read the replica.
			return gsync.RecoverStaged(ctx, root, n.DB, dir, log)
		},
		OnThaw: metrics.ObserveFreeze,
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
	hk := newHooks(dir, c.String("pre-sync-hook"), c.String("post-apply-hook"),
		[]string{"GEOREP_MOUNT=" + m.Mountpoint(), "GEOREP_BACKING=" + backing, "GEOREP_STATE=" + dir}, ctl.Role)
	cfg := gsync.Config{
		Self: n.Identity, Cert: cert, StateDir: dir, DB: n.DB, Journal: n.Journal, Index: n.Index,
		Root: m.BackingFD(), Source: m.Volume, Sink: m.Volume, Roles: ctl, Listen: listen,
		Schedule: c.String("schedule"), Logger: log,
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
	if err := ctl.Attach(eng, m.Volume, m.BackingFD(), frozen); err != nil {
		return err
	}
	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(ctx) }()
	ctlDone := make(chan struct{})
	go func() { ctl.Run(ctx); close(ctlDone) }()
	mode := "continuous"
	if s := c.String("schedule"); s != "" {
		mode = "schedule " + s
	}
	d := &daemonState{id: n.Identity, backing: backing, mount: m.Mountpoint(), mode: mode, journal: n.Journal,
		eng: eng, ctl: ctl, hooks: hk, pid: os.Getpid()}
	// The web server first: d.httpURL is set before anyone reads it.
	httpDone, err := serveWeb(ctx, c, httpLn, dir, d, metrics, log)
	if err != nil {
		return err
	}
	stopControl, err := serveControl(ctx, dir, d.mux(), log)
	if err != nil {
		return err
	}
	defer stopControl()

	gone := make(chan struct{})
	go func() { m.Wait(); close(gone) }()
	go cutSessions(ctx, m.Volume, log)
	// Ready once the role is settled: a restarted primary has asked its
	// peers (≤ 3s) whether another node became primary meanwhile.
	select {
	case <-ctl.Settled():
	case <-ctx.Done():
	}
	log.Info("georep daemon ready", "node", n.Identity.Name, "role", ctl.Role(), "epoch", ctl.State().Epoch,
		"backing", backing, "mount", m.Mountpoint(), "seq", n.Journal.Seq())
	signalReady(ctx)
	select {
	case err := <-httpDone:
		if ctx.Err() == nil {
			return fmt.Errorf("the status page server stopped: %w", err)
		}
		log.Info("stopping: unmounting", "mount", m.Mountpoint())
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
	<-ctlDone
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

// serveWeb serves the status page on ln (--http); the channel reports
// the server's end (nil when not serving: it never fires).
func serveWeb(ctx context.Context, c *cli.Context, ln net.Listener, dir string, d *daemonState, metrics *web.Metrics, log *slog.Logger) (<-chan error, error) {
	if ln == nil {
		return nil, nil
	}
	srv, err := web.New(web.Options{Backend: d, StateDir: dir, Metrics: metrics, Logger: log})
	if err != nil {
		return nil, err
	}
	done := web.Serve(ctx, ln, srv.Handler(), log)
	cert := c.String("http-tls-cert")
	scheme := "http"
	if cert != "" {
		scheme = "https"
	}
	d.httpURL = scheme + "://" + ln.Addr().String() + "/"
	log.Info("status page", "url", d.httpURL, "metrics", d.httpURL+"metrics")
	host, _, _ := net.SplitHostPort(c.String("http"))
	if ip := net.ParseIP(host); cert == "" && (ip == nil || !ip.IsLoopback()) {
		log.Warn("the status page is served without TLS on a non-loopback address: the takeover password would cross the network in clear (use --http-tls-cert/--http-tls-key or a TLS proxy)", "http", c.String("http"))
	}
	if h, err := web.LoadHash(dir); err != nil {
		log.Warn("takeover from the status page is off", "err", err)
	} else if h == "" {
		log.Info("takeover from the status page is off: no takeover password is set (--takeover-password-file)")
	}
	return done, nil
}
