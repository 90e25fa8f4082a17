package web

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed templates/page.html
var templates embed.FS

// Options configure a Server.
type Options struct {
	Backend Backend
	// StateDir holds the takeover password's hash (HashFile). It is read
	// at every attempt, so a new password takes effect at once.
	StateDir string
	Metrics  *Metrics
	Logger   *slog.Logger
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// Server is the daemon's web surface.
type Server struct {
	o    Options
	log  *slog.Logger
	tmpl *template.Template
	lim  *limiter
	// check admits one password check at a time: argon2id takes 64 MiB
	// and ≈130 ms here, so parallel guesses neither run faster nor
	// exhaust memory.
	check gosync.Mutex
}

// maxForm bounds a form post's body.
const maxForm = 16 << 10

// New prepares the server.
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	o.Metrics.SetBackend(o.Backend)
	t, err := template.New("page.html").Funcs(template.FuncMap{
		"ts": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"ago":      func(t time.Time) string { return o.Now().Sub(t).Round(time.Second).String() },
		"bytes":    humanBytes,
		"inc":      func(n uint64) uint64 { return n + 1 },
		"estimate": estimate,
		"stateClass": func(s string) string {
			switch s {
			case "in-sync":
				return "ok"
			case "disconnected":
				return "bad"
			}
			return "warn"
		},
	}).ParseFS(templates, "templates/page.html")
	if err != nil {
		return nil, fmt.Errorf("parse page template: %w", err)
	}
	return &Server{o: o, log: o.Logger.With("component", "web"), tmpl: t, lim: newLimiter(o.Now)}, nil
}

// Handler routes the surface. GETs only report; the two forms are POSTs,
// refused when they come from another origin.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { s.render(w, r, http.StatusOK, "", "") })
	mux.HandleFunc("POST /takeover", s.form("takeover", func(ctx context.Context) (string, error) {
		rep, err := s.o.Backend.Takeover(ctx)
		if err != nil {
			return "", err
		}
		msg := fmt.Sprintf("Took over: this node is the primary at epoch %d (its journal continues at seq %d).", rep.Epoch, rep.Start+1)
		return msg, nil
	}))
	mux.HandleFunc("POST /failback/commit", s.form("failback-commit", func(ctx context.Context) (string, error) {
		rep, err := s.o.Backend.FailbackCommit(ctx)
		if err != nil {
			return "", err
		}
		freeze := "its freeze time was not reported"
		if rep.FreezeKnown {
			freeze = "its mount was frozen for " + rep.Freeze.Round(time.Microsecond).String()
		}
		return fmt.Sprintf("Failback committed: this node is the primary at epoch %d; %s follows it (%s).", rep.Epoch, rep.From, freeze), nil
	}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.o.Metrics.Registry(), promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", s.healthz)
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("refused a cross-origin form post", "path", r.URL.Path, "remote", r.RemoteAddr,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		form := "other" // a label per known form only: paths are the client's to invent
		switch r.URL.Path {
		case "/takeover":
			form = "takeover"
		case "/failback/commit":
			form = "failback-commit"
		}
		s.o.Metrics.attempts.WithLabelValues(form, "cross-origin").Inc()
		http.Error(w, "cross-origin form posts are refused", http.StatusForbidden)
	}))
	return securityHeaders(cop.Handler(mux))
}

// securityHeaders keeps the page out of frames and caches and lets it
// load nothing from elsewhere (it needs no script at all).
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// view is the template's data.
type view struct {
	P           *Page
	Now         time.Time
	PasswordSet bool
	Error, Done string
}

// render shows the page with a message. The table of every node (which
// asks each peer) is on it for a plain GET and after an action ran
// (renderAfterAction): refused posts, which anyone can send as fast as
// they like, make the node dial nobody.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, errMsg, done string) {
	s.renderPage(w, r, code, errMsg, done, r.Method == http.MethodGet)
}

func (s *Server) renderAfterAction(w http.ResponseWriter, r *http.Request, code int, errMsg, done string) {
	s.renderPage(w, r, code, errMsg, done, true)
}

func (s *Server) renderPage(w http.ResponseWriter, r *http.Request, code int, errMsg, done string, nodes bool) {
	p := s.o.Backend.Snapshot(r.Context(), nodes)
	hash, err := LoadHash(s.o.StateDir)
	if err != nil {
		s.log.Warn("takeover password", "err", err)
		if errMsg == "" {
			errMsg = "The takeover password's hash cannot be read: " + err.Error()
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	v := view{P: p, Now: s.o.Now(), PasswordSet: hash != "", Error: errMsg, Done: done}
	if err := s.tmpl.Execute(w, v); err != nil {
		s.log.Warn("render status page", "err", err)
	}
}

// form handles a form post that acts: it checks the password (rate
// limited per client) and that the page was rendered at the node's
// current epoch, then acts and shows the page with the outcome.
func (s *Server) form(name string, act func(context.Context) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		count := func(outcome string) { s.o.Metrics.attempts.WithLabelValues(name, outcome).Inc() }
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			count("bad-request")
			http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
			return
		}
		remote := clientKey(r.RemoteAddr)
		log := s.log.With("form", name, "remote", r.RemoteAddr)
		hash, err := LoadHash(s.o.StateDir)
		if err != nil || hash == "" {
			count("no-password")
			log.Warn("form refused: no takeover password is set", "err", err)
			s.render(w, r, http.StatusForbidden, "Refused: no takeover password is set on this node.", "")
			return
		}
		limited := func(wait time.Duration) {
			count("rate-limited")
			log.Warn("form refused: too many wrong passwords from this client", "retry_after", wait.Round(time.Second))
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds()+0.999)))
			s.render(w, r, http.StatusTooManyRequests,
				fmt.Sprintf("Refused: too many wrong passwords from your address; try again in %s.", roundUp(wait)), "")
		}
		if ok, wait := s.lim.allow(remote); !ok {
			limited(wait)
			return
		}
		pw := r.PostForm.Get("password")
		s.check.Lock()
		// Asked again under the lock, and a failure recorded before it is
		// released: guesses sent in parallel were all admitted above.
		if ok, wait := s.lim.allow(remote); !ok {
			s.check.Unlock()
			limited(wait)
			return
		}
		ok, err := VerifyPassword(hash, []byte(pw))
		var lock time.Duration
		if !ok && err == nil {
			lock = s.lim.failed(remote)
		}
		s.check.Unlock()
		if err != nil {
			count("no-password")
			log.Error("form refused: the stored password hash is unreadable", "err", err)
			s.render(w, r, http.StatusInternalServerError, "Refused: the stored password hash is unreadable: "+err.Error(), "")
			return
		}
		if !ok {
			count("wrong-password")
			log.Warn("form refused: wrong takeover password", "lockout", lock)
			msg := "Refused: wrong password."
			if lock > 0 {
				msg += fmt.Sprintf(" Too many wrong passwords: try again in %s.", roundUp(lock))
			}
			s.render(w, r, http.StatusForbidden, msg, "")
			return
		}
		s.lim.succeeded(remote)
		cur := s.o.Backend.Snapshot(r.Context(), false)
		if got := r.PostForm.Get("epoch"); got != strconv.FormatUint(cur.Epoch, 10) {
			count("stale")
			log.Warn("form refused: the page it came from was out of date", "form_epoch", got, "epoch", cur.Epoch)
			s.render(w, r, http.StatusConflict, fmt.Sprintf(
				"Nothing done: the page you submitted was out of date (this node is at epoch %d now, %s). Check the page below and submit again if you still mean it.",
				cur.Epoch, cur.Role), "")
			return
		}
		log.Warn("form accepted: acting", "role", cur.Role, "epoch", cur.Epoch)
		done, err := act(r.Context())
		if err != nil {
			count("refused")
			log.Warn("form action failed", "err", err)
			s.renderAfterAction(w, r, http.StatusConflict, "Refused: "+oneLine(err.Error()), "")
			return
		}
		count("done")
		log.Warn("form action done", "result", done)
		s.renderAfterAction(w, r, http.StatusOK, "", done)
	}
}

// healthz answers 200 when the node is healthy, 503 with what is wrong
// otherwise; ?max_lag=DURATION also fails when a peer lags further
// (as georep status --max-lag does).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	var maxLag time.Duration
	if v := r.URL.Query().Get("max_lag"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			http.Error(w, "bad max_lag: want a positive duration such as 30s", http.StatusBadRequest)
			return
		}
		maxLag = d
	}
	p := s.o.Backend.Snapshot(r.Context(), false)
	problem := s.o.Backend.Health(r.Context(), maxLag)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if problem != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "unhealthy: %s\n", problem)
		return
	}
	fmt.Fprintf(w, "ok: %s %s, epoch %d, seq %d\n", p.Node, p.Role, p.Epoch, p.Seq)
}

// clientKey is the address rate limits apply to: the IP, and for IPv6
// its /64 (one site holds a whole /64).
func clientKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

func roundUp(d time.Duration) time.Duration { return (d + time.Second - 1).Truncate(time.Second) }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func humanBytes(n any) string {
	var v float64
	switch x := n.(type) {
	case uint64:
		v = float64(x)
	case int64:
		v = float64(x)
	case int:
		v = float64(x)
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

func estimate(sec float64) string {
	if sec < 0 {
		return "unknown"
	}
	return (time.Duration(sec * float64(time.Second))).Round(time.Second).String()
}

// Listen opens the status page's listener on addr, over TLS when
// certFile and keyFile are given (both are read now, so a bad one fails
// the daemon's start, not its first request).
func Listen(addr, certFile, keyFile string) (net.Listener, error) {
	var cfg *tls.Config
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--http-tls-cert/--http-tls-key: %w", err)
		}
		cfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", addr, err)
	}
	if cfg != nil {
		l = tls.NewListener(l, cfg)
	}
	return l, nil
}

// Serve serves h on l until ctx ends; the channel reports the end.
func Serve(ctx context.Context, l net.Listener, h http.Handler, log *slog.Logger) <-chan error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A takeover asks every peer and may wait for them.
		WriteTimeout: 2 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	return done
}
