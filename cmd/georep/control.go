package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/georep/georep/node"
)

// The control socket: HTTP over a Unix socket in the state dir, readable
// and writable by root only (the dir is 0700). The daemon serves it; the
// CLI's reporting commands are its clients.

// controlServer serves mux on the state dir's socket until ctx ends.
func serveControl(ctx context.Context, stateDir string, mux *http.ServeMux, log *slog.Logger) (func(), error) {
	sock := node.SocketPath(stateDir)
	// The caller holds the state dir lock, so a socket left here is stale.
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale control socket: %w", err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict control socket: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("control socket stopped", "err", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		os.Remove(sock)
	}, nil
}

// errNoDaemon says no daemon answers on the state dir's socket.
var errNoDaemon = errors.New("no georep daemon is running for this state dir")

// controlClient talks to the daemon of a state dir.
type controlClient struct {
	http *http.Client
}

func newControlClient(stateDir string) *controlClient {
	sock := node.SocketPath(stateDir)
	return &controlClient{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

// get fetches path from the daemon. The caller closes the body.
func (c *controlClient) get(ctx context.Context, path string) (io.ReadCloser, error) {
	return c.do(ctx, http.MethodGet, path)
}

// do sends a request without a body. The caller closes the reply's body.
func (c *controlClient) do(ctx context.Context, method, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://georep"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, errNoDaemon
		}
		return nil, fmt.Errorf("reach daemon: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return nil, errors.New(e.Error)
	}
	return resp.Body, nil
}

// getJSON fetches path and decodes it into out.
func (c *controlClient) getJSON(ctx context.Context, path string, out any) error {
	return c.doJSON(ctx, http.MethodGet, path, out)
}

// doJSON sends a request and decodes the reply into out.
func (c *controlClient) doJSON(ctx context.Context, method, path string, out any) error {
	body, err := c.do(ctx, method, path)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := json.NewDecoder(body).Decode(out); err != nil {
		return fmt.Errorf("decode daemon reply: %w", err)
	}
	return nil
}

// writeJSON replies with v, or with an error object and status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}
