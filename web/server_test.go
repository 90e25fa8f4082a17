package web

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	gosync "sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/georep/georep/failover"
	gsync "github.com/georep/georep/sync"
)

// fakeNode is a Backend whose state the test sets; it counts actions.
type fakeNode struct {
	mu        gosync.Mutex
	page      Page
	problem   string
	takeovers int
	commits   int
	nodeAsks  int // snapshots that asked the peers
	refuse    error
}

func (f *fakeNode) Snapshot(ctx context.Context, nodes bool) *Page {
	f.mu.Lock()
	defer f.mu.Unlock()
	if nodes {
		f.nodeAsks++
	}
	p := f.page
	return &p
}

func (f *fakeNode) Health(ctx context.Context, maxLag time.Duration) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.problem != "" {
		return f.problem
	}
	for _, p := range f.page.Peers {
		if maxLag > 0 && p.LagSeconds > maxLag.Seconds() {
			return p.Name + " lags"
		}
	}
	return ""
}

func (f *fakeNode) Takeover(ctx context.Context) (*failover.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		return nil, f.refuse
	}
	f.takeovers++
	f.page.Role, f.page.Epoch = gsync.RolePrimary, f.page.Epoch+1
	return &failover.Report{Node: f.page.Node, Epoch: f.page.Epoch, Start: f.page.Seq}, nil
}

func (f *fakeNode) FailbackCommit(ctx context.Context) (*failover.CommitReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commits++
	f.page.Role, f.page.Epoch = gsync.RolePrimary, f.page.Epoch+1
	return &failover.CommitReport{Epoch: f.page.Epoch, From: "a", Freeze: 25 * time.Millisecond, FreezeKnown: true}, nil
}

func (f *fakeNode) actions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.takeovers + f.commits
}

const testPassword = "right-password"

type fixture struct {
	node *fakeNode
	srv  *Server
	ts   *httptest.Server
	clk  *fakeClock
	logs *bytes.Buffer
	m    *Metrics
}

func newFixture(t testing.TB, withPassword bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	if withPassword {
		if err := SetPassword(dir, []byte(testPassword)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	node := &fakeNode{page: Page{
		Node: "b", ID: "b-id", Role: gsync.RoleSecondary, Epoch: 4, Seq: 120, Primary: "a",
		Replica:  &Replica{Cursor: 117, CursorEpoch: 4, Applied: now.Add(-3 * time.Second)},
		Failback: failover.FailbackStatus{State: failover.FailbackNone},
		Hooks:    Hooks{PostApply: "import.sh", Log: "/state/hooks.log", Tail: []string{"=== import ok"}},
		Counters: gsync.Counters{BatchesApplied: 9, RecordsApplied: 117, ApplyErrors: 1,
			Peers: map[string]gsync.PeerCounters{"c": {BatchesShipped: 3, RecordsShipped: 30, BytesShipped: 4096, Errors: 2}}},
		Peers: []gsync.PeerStatus{{Name: "c", Addr: "127.0.0.1:9", State: gsync.StateInSync, AckedSeq: 118,
			LagSeconds: 0.25, PendingEntries: 2, PendingBytes: 8192, LastSynced: now}},
		Conflicts: []failover.ConflictSet{{Epoch: 3, Dir: ".georep/conflicts/3", Count: 5, Primary: "a"}},
	}}
	logs := new(bytes.Buffer)
	clk := &fakeClock{t: now}
	m := NewMetrics()
	srv, err := New(Options{Backend: node, StateDir: dir, Metrics: m, Now: clk.now,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &fixture{node: node, srv: srv, ts: ts, clk: clk, logs: logs, m: m}
}

func (f *fixture) post(t *testing.T, path string, form url.Values, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", f.ts.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, req)
}

func (f *fixture) get(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func takeoverForm(pw string, epoch string) url.Values {
	return url.Values{"password": {pw}, "epoch": {epoch}}
}

func TestStatusPage(t *testing.T) {
	f := newFixture(t, true)
	code, body := f.get(t, "GET", "/")
	if code != 200 {
		t.Fatalf("GET /: %d", code)
	}
	for _, want := range []string{`id="role" class="role secondary">secondary<`, `id="epoch">4<`, `id="primary">a<`,
		`action="/takeover"`, `name="epoch" value="4"`, `Take over`, "last valid copy", ".georep/conflicts/3",
		"=== import ok", "in-sync", "8.0 KiB"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script") {
		t.Error("the page has a script")
	}
	uniqueIDs(t, body)
	// A primary is not offered a takeover.
	f.node.page.Role = gsync.RolePrimary
	if _, body := f.get(t, "GET", "/"); strings.Contains(body, `action="/takeover"`) {
		t.Error("a primary's page offers a takeover")
	}
	// Without a password, no form.
	g := newFixture(t, false)
	if _, body := g.get(t, "GET", "/"); strings.Contains(body, `action="/takeover"`) || !strings.Contains(body, "no takeover password is set") {
		t.Error("a node without a password offers the takeover form, or does not say why not")
	}
}

// TestNoStateChangeOnGET: every route, asked with GET or HEAD (with the
// right password in the query, even), changes nothing.
func TestNoStateChangeOnGET(t *testing.T) {
	f := newFixture(t, true)
	q := "?" + takeoverForm(testPassword, "4").Encode()
	for _, path := range []string{"/", "/takeover", "/failback/commit", "/metrics", "/healthz", "/takeover" + q, "/failback/commit" + q, "/" + q} {
		for _, method := range []string{"GET", "HEAD"} {
			code, _ := f.get(t, method, path)
			if strings.HasPrefix(path, "/takeover") || strings.HasPrefix(path, "/failback") {
				if code != http.StatusMethodNotAllowed {
					t.Errorf("%s %s: %d, want 405", method, path, code)
				}
			}
		}
	}
	for _, method := range []string{"PUT", "DELETE", "PATCH"} {
		req, _ := http.NewRequest(method, f.ts.URL+"/takeover"+q, strings.NewReader(takeoverForm(testPassword, "4").Encode()))
		if code, _ := do(t, req); code != http.StatusMethodNotAllowed {
			t.Errorf("%s /takeover: %d, want 405", method, code)
		}
	}
	if n := f.node.actions(); n != 0 {
		t.Fatalf("%d actions ran on GET/HEAD/other methods", n)
	}
	if f.node.page.Role != gsync.RoleSecondary || f.node.page.Epoch != 4 {
		t.Fatal("state changed")
	}
}

func TestTakeoverForm(t *testing.T) {
	f := newFixture(t, true)
	code, body := f.post(t, "/takeover", takeoverForm("wrong-password", "4"))
	if code != http.StatusForbidden || !strings.Contains(body, "wrong password") {
		t.Fatalf("wrong password: %d, body has message: %v", code, strings.Contains(body, "wrong password"))
	}
	if f.node.actions() != 0 {
		t.Fatal("a wrong password took over")
	}
	if !strings.Contains(f.logs.String(), "wrong takeover password") {
		t.Error("the wrong password was not logged")
	}
	// A form without a password, or from another origin, does nothing.
	if code, _ := f.post(t, "/takeover", url.Values{"epoch": {"4"}}); code != http.StatusForbidden {
		t.Errorf("no password: %d", code)
	}
	for _, hdr := range [][]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://evil.example"}} {
		code, _ := f.post(t, "/takeover", takeoverForm(testPassword, "4"), hdr...)
		if code != http.StatusForbidden {
			t.Errorf("cross-origin post (%s): %d, want 403", hdr, code)
		}
	}
	if f.node.actions() != 0 {
		t.Fatal("a cross-origin or password-less post took over")
	}
	// A stale page (rendered at another epoch) does nothing.
	if code, body := f.post(t, "/takeover", takeoverForm(testPassword, "3")); code != http.StatusConflict || !strings.Contains(body, "out of date") {
		t.Fatalf("stale form: %d", code)
	}
	// A refusal is shown.
	f.node.refuse = errors.New("failover refused: the primary a still answers")
	if code, body := f.post(t, "/takeover", takeoverForm(testPassword, "4")); code != http.StatusConflict || !strings.Contains(body, "the primary a still answers") {
		t.Fatalf("refused takeover: %d", code)
	}
	f.node.refuse = nil
	// Same-origin (as a browser sends it) with the right password.
	code, body = f.post(t, "/takeover", takeoverForm(testPassword, "4"), "Sec-Fetch-Site", "same-origin", "Origin", f.ts.URL)
	if code != 200 || !strings.Contains(body, "Took over") || !strings.Contains(body, `class="role primary"`) {
		t.Fatalf("takeover: %d\n%s", code, body)
	}
	if f.node.takeovers != 1 {
		t.Fatalf("%d takeovers", f.node.takeovers)
	}
	// Posting the same form again (a reload) does nothing: the epoch moved.
	if code, _ := f.post(t, "/takeover", takeoverForm(testPassword, "4")); code != http.StatusConflict || f.node.takeovers != 1 {
		t.Fatalf("replayed form: %d, %d takeovers", code, f.node.takeovers)
	}
}

// TestTakeoverRateLimited: after three wrong passwords a client is
// locked out, doubling; while locked out even the right password is
// refused unchecked; the lockout is per client.
func TestTakeoverRateLimited(t *testing.T) {
	f := newFixture(t, true)
	for i := 0; i < freeLimit; i++ {
		if code, _ := f.post(t, "/takeover", takeoverForm("guess", "4")); code != http.StatusForbidden {
			t.Fatalf("guess %d: %d", i+1, code)
		}
	}
	code, body := f.post(t, "/takeover", takeoverForm("guess", "4"))
	if code != http.StatusForbidden || !strings.Contains(body, "try again in 1s") {
		t.Fatalf("4th guess: %d", code)
	}
	req, _ := http.NewRequest("POST", f.ts.URL+"/takeover", strings.NewReader(takeoverForm(testPassword, "4").Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("right password while locked out: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if f.node.actions() != 0 {
		t.Fatal("took over while locked out")
	}
	if f.node.nodeAsks != 0 {
		t.Errorf("refused posts asked the peers %d times", f.node.nodeAsks)
	}
	if !strings.Contains(f.logs.String(), "too many wrong passwords") {
		t.Error("the lockout was not logged")
	}
	f.clk.advance(time.Second)
	if code, _ := f.post(t, "/takeover", takeoverForm("guess", "4")); code != http.StatusForbidden {
		t.Fatalf("guess after the lockout: %d", code)
	}
	if code, _ := f.post(t, "/takeover", takeoverForm(testPassword, "4")); code != http.StatusTooManyRequests {
		t.Fatalf("right password during the doubled lockout: %d", code)
	}
	f.clk.advance(2 * time.Second)
	if code, _ := f.post(t, "/takeover", takeoverForm(testPassword, "4")); code != 200 || f.node.takeovers != 1 {
		t.Fatalf("right password after the lockout: %d, %d takeovers", code, f.node.takeovers)
	}
	// Counted by outcome.
	fams := scrape(t, f)
	counts := map[string]float64{}
	for _, m := range fams["georep_web_form_attempts_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "outcome" {
				counts[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	if counts["wrong-password"] != 5 || counts["rate-limited"] != 2 || counts["done"] != 1 {
		t.Errorf("form attempts counted: %v", counts)
	}
}

func TestFailbackCommitForm(t *testing.T) {
	f := newFixture(t, true)
	if _, body := f.get(t, "GET", "/"); strings.Contains(body, `action="/failback/commit"`) {
		t.Error("commit form shown with no failback")
	}
	f.node.page.Failback = failover.FailbackStatus{State: failover.FailbackCompleted, Primary: "a", Estimate: 0}
	_, body := f.get(t, "GET", "/")
	if !strings.Contains(body, `action="/failback/commit"`) {
		t.Fatal("commit form not shown for a completed failback")
	}
	uniqueIDs(t, body)
	if code, _ := f.post(t, "/failback/commit", takeoverForm("nope-nope", "4")); code != http.StatusForbidden || f.node.commits != 0 {
		t.Fatalf("commit with a wrong password: %d", code)
	}
	code, body := f.post(t, "/failback/commit", takeoverForm(testPassword, "4"))
	if code != 200 || f.node.commits != 1 || !strings.Contains(body, "frozen for 25ms") {
		t.Fatalf("commit: %d, %d commits", code, f.node.commits)
	}
}

func scrape(t *testing.T, f *fixture) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := f.get(t, "GET", "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, true)
	f.m.ObserveFreeze(20 * time.Millisecond)
	f.m.ObserveFreeze(300 * time.Millisecond)
	fams := scrape(t, f)
	value := func(name string, labels ...string) (float64, bool) {
		fam := fams[name]
		if fam == nil {
			return 0, false
		}
	next:
		for _, m := range fam.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
		return 0, false
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"georep_journal_seq", nil, 120},
		{"georep_epoch", nil, 4},
		{"georep_role", []string{"role", "secondary"}, 1},
		{"georep_role", []string{"role", "primary"}, 0},
		{"georep_role", []string{"role", "fenced"}, 0},
		{"georep_peer_acked_seq", []string{"peer", "c"}, 118},
		{"georep_peer_lag_seconds", []string{"peer", "c"}, 0.25},
		{"georep_peer_pending_entries", []string{"peer", "c"}, 2},
		{"georep_peer_pending_bytes", []string{"peer", "c"}, 8192},
		{"georep_peer_state", []string{"peer", "c", "state", "in-sync"}, 1},
		{"georep_peer_state", []string{"peer", "c", "state", "disconnected"}, 0},
		{"georep_bytes_shipped_total", []string{"peer", "c"}, 4096},
		{"georep_batches_shipped_total", []string{"peer", "c"}, 3},
		{"georep_sync_errors_total", []string{"direction", "ship", "peer", "c"}, 2},
		{"georep_sync_errors_total", []string{"direction", "apply"}, 1},
		{"georep_batches_applied_total", nil, 9},
		{"georep_records_applied_total", nil, 117},
		{"georep_replica_cursor", nil, 117},
		{"georep_failback_state", []string{"state", "none"}, 1},
		{"georep_conflict_copies", nil, 5},
		{"georep_freeze_seconds", nil, 2},
	} {
		got, ok := value(c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if fams["georep_freeze_seconds"].GetType().String() != "HISTOGRAM" {
		t.Error("georep_freeze_seconds is not a histogram")
	}
	if fams["georep_bytes_shipped_total"].GetType().String() != "COUNTER" {
		t.Error("georep_bytes_shipped_total is not a counter")
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	if ts, ok := value("georep_peer_last_synced_timestamp_seconds", "peer", "c"); !ok || time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last synced timestamp %v", ts)
	}
}

func TestHealthz(t *testing.T) {
	f := newFixture(t, true)
	if code, body := f.get(t, "GET", "/healthz"); code != 200 || !strings.HasPrefix(body, "ok: b secondary, epoch 4") {
		t.Fatalf("healthy: %d %q", code, body)
	}
	if code, _ := f.get(t, "GET", "/healthz?max_lag=1s"); code != 200 {
		t.Fatalf("lag 0.25s under 1s: %d", code)
	}
	if code, body := f.get(t, "GET", "/healthz?max_lag=100ms"); code != 503 || !strings.Contains(body, "c lags") {
		t.Fatalf("lag 0.25s over 100ms: %d %q", code, body)
	}
	for _, bad := range []string{"x", "-1s", "0"} {
		if code, _ := f.get(t, "GET", "/healthz?max_lag="+bad); code != 400 {
			t.Errorf("max_lag=%s: %d, want 400", bad, code)
		}
	}
	f.node.problem = "the mount does not answer"
	if code, body := f.get(t, "GET", "/healthz"); code != 503 || !strings.Contains(body, "the mount does not answer") {
		t.Fatalf("unhealthy: %d %q", code, body)
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, true)
	resp, err := http.Get(f.ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for h, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "form-action 'self'") {
		t.Errorf("CSP %q", csp)
	}
	// A huge form is refused before anything is checked.
	big := url.Values{"password": {strings.Repeat("x", 2*maxForm)}, "epoch": {"4"}}
	if code, _ := f.post(t, "/takeover", big); code != http.StatusBadRequest {
		t.Errorf("oversized form: %d, want 400", code)
	}
}

// uniqueIDs fails on an element id used twice (a test clicking it would
// hit the first).
func uniqueIDs(t *testing.T, body string) {
	t.Helper()
	seen := map[string]bool{}
	for _, part := range strings.Split(body, ` id="`)[1:] {
		id := part[:strings.IndexByte(part, '"')]
		if seen[id] {
			t.Errorf("id %q used twice on the page", id)
		}
		seen[id] = true
	}
}

// TestParallelGuessesLimited: guesses sent at once are checked one at a
// time and the lockout holds for those already waiting: of 20 parallel
// wrong passwords, only the free ones and the one that starts the lockout
// are checked.
func TestParallelGuessesLimited(t *testing.T) {
	f := newFixture(t, true)
	var wg gosync.WaitGroup
	codes := make(chan int, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", f.ts.URL+"/takeover", strings.NewReader(takeoverForm("guess", "4").Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	if n[http.StatusForbidden] != freeLimit+1 || n[http.StatusTooManyRequests] != 20-freeLimit-1 {
		t.Fatalf("answers to 20 parallel guesses: %v, want %d checked (403) and the rest refused unchecked (429)", n, freeLimit+1)
	}
}
