package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// artifactDir is where tests leave what a person may want to look at
// (screenshots): $GEOREP_ARTIFACTS, or artifacts/ at the repo's top.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("GEOREP_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// chromium finds Debian's chromium (installed by .ci/run and make deps).
// Its absence fails the test: CI must not pass by skipping the browser.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("GEOREP_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p != "" {
			if _, err := exec.LookPath(p); err == nil {
				return p
			}
		}
	}
	t.Fatal("chromium is not installed (apt-get install chromium; make deps does it)")
	return ""
}

// newBrowser starts headless Chromium with a fresh profile and nothing
// that reaches out to the network on its own.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1200, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first action starts the browser, which lives as long as ctx.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// textOf reads the text of the element sel matches ("" if none), without
// waiting for it.
func textOf(ctx context.Context, sel string) (string, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[string](
		fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent.trim()`, sel)))
}

// waitText waits until the element sel matches holds want.
func waitText(t *testing.T, ctx context.Context, sel, want string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		s, err := textOf(ctx, sel)
		if err == nil && strings.Contains(s, want) {
			return s
		}
		last = s
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never held %q (last: %q)", sel, want, last)
	return ""
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

// pageURL is the status page a daemon serves (status --json "http").
func pageURL(t *testing.T, d *daemon) string {
	t.Helper()
	u, _ := statusOf(t, d)["http"].(string)
	if u == "" {
		t.Fatalf("%s serves no status page", d.state)
	}
	return u
}

// TestTakeoverPageInBrowser drives the status page in headless Chromium:
// the primary is killed, a wrong password is refused on the page, the
// right one promotes the secondary, and the page shows the new role.
func TestTakeoverPageInBrowser(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "takeover-password")
	if err := os.WriteFile(pw, []byte("open sesame 42\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 1, "--http", "127.0.0.1:0", "--takeover-password-file", pw)
	defer c.dumpLogs()
	p, s := c.primary, c.second[0]
	if err := os.WriteFile(filepath.Join(p.mount, "report.txt"), []byte("written before the takeover\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.syncWait()
	url := pageURL(t, s)
	ctx := newBrowser(t)

	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID("role"))); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	if role := waitText(t, ctx, "#role", "secondary"); role != "secondary" {
		t.Fatalf("role on the page: %q", role)
	}
	if last := waitText(t, ctx, "#last-applied", "UTC"); last == "" {
		t.Fatal("no last valid copy on the page")
	}
	// While the primary lives, a takeover is refused (and says why).
	submit := func(password string) {
		t.Helper()
		if err := chromedp.Do(ctx,
			chromedp.WaitVisible(chromedp.ID("password")),
			chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.ID("takeover")),
		); err != nil {
			t.Fatalf("submit the takeover form: %v", err)
		}
	}
	submit("open sesame 42")
	waitText(t, ctx, "#message", "is alive")
	p.kill()

	// A wrong password: refused, the role stays.
	submit("open sesame 43")
	waitText(t, ctx, "#message", "wrong password")
	if role, _ := textOf(ctx, "#role"); role != "secondary" {
		t.Fatalf("role after a wrong password: %q", role)
	}
	if role, epoch := roleOf(t, s); role != "secondary" || epoch != 1 {
		t.Fatalf("after a wrong password the node is %s at epoch %d", role, epoch)
	}
	screenshot(t, ctx, "takeover-wrong-password.png")

	// The right one: the page shows the new role.
	submit("open sesame 42")
	waitText(t, ctx, "#message", "Took over")
	waitText(t, ctx, "#role", "primary")
	waitText(t, ctx, "#epoch", "2")
	screenshot(t, ctx, "takeover-done.png")
	if role, epoch := roleOf(t, s); role != "primary" || epoch != 2 {
		t.Fatalf("after the takeover the node is %s at epoch %d", role, epoch)
	}
	// A fresh load shows it too, and the mount takes writes.
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#role", "primary")
	if err := os.WriteFile(filepath.Join(s.mount, "after.txt"), []byte("written after\n"), 0o644); err != nil {
		t.Fatalf("write to the new primary: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(s.mount, "report.txt")); err != nil || string(b) != "written before the takeover\n" {
		t.Fatalf("replicated file on the new primary: %q %v", b, err)
	}
	// The daemon logged the refused password and the role change.
	if log := s.log.String(); !strings.Contains(log, "wrong takeover password") || !strings.Contains(log, "role change") {
		t.Errorf("daemon log lacks the refused password or the role change:\n%s", tail(log, 30))
	}

	// The old primary comes back (fenced, then following s1) and fails
	// back from its own page: the commit form appears once the failback
	// is completed, and commits.
	p.restart()
	r := georep(t, "failback", "start", "--state", p.state, "--wait", "--timeout", "90s")
	if r.code != 0 {
		t.Fatalf("failback start: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	purl := pageURL(t, p)
	if err := chromedp.Do(ctx, chromedp.Navigate(purl)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#failback-state", "completed")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#commit-form input[type=password]`), "open sesame 42"),
		chromedp.Click(chromedp.CSS(`#commit-form button`)),
	); err != nil {
		t.Fatalf("submit the commit form: %v", err)
	}
	waitText(t, ctx, "#message", "Failback committed")
	waitText(t, ctx, "#role", "primary")
	waitText(t, ctx, "#epoch", "3")
	screenshot(t, ctx, "failback-committed.png")
	waitRole(t, s, "secondary", 3, 10*time.Second)
	// The commit froze s1's mount: its freeze histogram counted it.
	resp, err := http.Get(url + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "georep_freeze_seconds_count") || strings.Contains(string(body), "georep_freeze_seconds_count 0\n") {
		t.Errorf("s1's metrics count no freeze after the commit")
	}
}

// TestWebEndpointsOnDaemon checks the real daemon's /healthz and
// /metrics (scraped, parsed by the metrics test helpers of package web
// in unit tests; here: the values track the node) and that GETs change
// nothing.
func TestWebEndpointsOnDaemon(t *testing.T) {
	t.Setenv("GEOREP_TEST_PING_INTERVAL", "200ms") // the daemons inherit it
	c := newCluster(t, 1, "--http", "127.0.0.1:0", "--log-format", "json")
	defer c.dumpLogs()
	p, s := c.primary, c.second[0]
	c.syncWait() // the initial (tree) sync first: what follows ships in batches
	for i := range 5 {
		if err := os.WriteFile(filepath.Join(p.mount, fmt.Sprintf("f%d", i)), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.syncWait()
	get := func(d *daemon, path string) (int, string) {
		t.Helper()
		resp, err := http.Get(strings.TrimSuffix(pageURL(t, d), "/") + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(p, "/healthz?max_lag=30s"); code != 200 || !strings.HasPrefix(body, "ok: p primary, epoch 1") {
		t.Fatalf("healthz on the primary: %d %q", code, body)
	}
	seq := p.seq()
	// status --json still carries every field it had (the volume ID among
	// them) now that it is rendered from the daemon's snapshot.
	for _, d := range []*daemon{p, s} {
		st := statusOf(t, d)
		for _, k := range []string{"node", "id", "role", "epoch", "seq", "mount", "backing", "pid", "volume", "mode", "primary", "peers", "failback", "http"} {
			if v, ok := st[k]; !ok || v == "" {
				t.Errorf("%s: status --json lacks %q", d.state, k)
			}
		}
	}
	m := scrapeMetrics(t, get, p)
	want := map[string]float64{
		"georep_journal_seq":                           float64(seq),
		`georep_role{role="primary"}`:                  1,
		`georep_peer_acked_seq{peer="s1"}`:             float64(seq),
		`georep_peer_state{peer="s1",state="in-sync"}`: 1,
		"georep_epoch":                                 1,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("primary %s = %v, want %v", k, m[k], v)
		}
	}
	if m[`georep_batches_shipped_total{peer="s1"}`] < 1 || m[`georep_bytes_shipped_total{peer="s1"}`] < 20 {
		t.Errorf("shipping counters: batches %v bytes %v", m[`georep_batches_shipped_total{peer="s1"}`], m[`georep_bytes_shipped_total{peer="s1"}`])
	}
	ms := scrapeMetrics(t, get, s)
	if ms[`georep_role{role="secondary"}`] != 1 || ms["georep_replica_cursor"] != float64(seq) || ms["georep_batches_applied_total"] < 1 {
		t.Errorf("secondary metrics: role %v cursor %v applied %v", ms[`georep_role{role="secondary"}`], ms["georep_replica_cursor"], ms["georep_batches_applied_total"])
	}
	// Structured logs: every line JSON; one per batch shipped, applied,
	// and per role change.
	msgs := func(d *daemon) map[string][]map[string]any {
		out := map[string][]map[string]any{}
		for _, line := range strings.Split(strings.TrimSpace(d.log.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("log line is not JSON: %q", line)
			}
			msg, _ := m["msg"].(string)
			out[msg] = append(out[msg], m)
		}
		return out
	}
	pm, sm := msgs(p), msgs(s)
	shipped := pm["batch shipped"]
	if len(shipped) == 0 || shipped[0]["peer"] != "s1" || shipped[0]["records"] == nil || shipped[0]["bytes"] == nil {
		t.Errorf("primary's batch shipped lines: %v", shipped)
	}
	if applied := sm["batch applied"]; len(applied) == 0 || applied[len(applied)-1]["seq"] != float64(seq) {
		t.Errorf("secondary's batch applied lines: %v", applied)
	}
	if rc := sm["role change"]; len(rc) == 0 || rc[len(rc)-1]["to"] != "secondary" || rc[len(rc)-1]["epoch"] != float64(1) {
		t.Errorf("secondary's role change lines: %v", rc)
	}
	// An idle primary's pings tell the secondary it is in line: its copy
	// is valid as of a moment ago, later than its last batch.
	time.Sleep(time.Second)
	rep, _ := statusOf(t, s)["replica"].(map[string]any)
	applied, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(rep["applied"]))
	valid, err := time.Parse(time.RFC3339Nano, fmt.Sprint(rep["valid_as_of"]))
	if err != nil || !valid.After(applied) || time.Since(valid) > 700*time.Millisecond {
		t.Errorf("secondary's copy valid as of %v (applied %v, now %v): want a ping within the last 700ms", rep["valid_as_of"], rep["applied"], time.Now().UTC())
	}
	// Every GET, every route, both nodes: nothing changes.
	for _, d := range []*daemon{p, s} {
		for _, path := range []string{"/", "/takeover", "/failback/commit", "/metrics", "/healthz", "/takeover?password=x&epoch=1"} {
			get(d, path)
		}
	}
	if role, epoch := roleOf(t, s); role != "secondary" || epoch != 1 {
		t.Fatalf("after GETs s1 is %s at epoch %d", role, epoch)
	}
	// The secondary gone while the primary is idle: the primary notices
	// at once (nothing to ship, no ping due), so healthz with a lag
	// threshold fails within a moment; plain healthz does not.
	s.kill()
	killed := time.Now()
	for {
		code, body := get(p, "/healthz?max_lag=100ms")
		if code == 503 && strings.Contains(body, "s1 is disconnected") {
			t.Logf("healthz failed %s after s1 was killed: %s", time.Since(killed).Round(time.Millisecond), strings.TrimSpace(body))
			break
		}
		if time.Since(killed) > 5*time.Second {
			t.Fatalf("healthz 5s after s1 was killed (idle primary), max_lag=100ms: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := get(p, "/healthz"); code != 200 {
		t.Fatalf("plain healthz of a primary whose secondary is gone: %d", code)
	}
}

// scrapeMetrics reads /metrics into series → value (gauges and counters).
func scrapeMetrics(t *testing.T, get func(*daemon, string) (int, string), d *daemon) map[string]float64 {
	t.Helper()
	code, body := get(d, "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		if _, err := fmt.Sscan(line[i+1:], &v); err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}
