package web

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/georep/georep/failover"
	gsync "github.com/georep/georep/sync"
)

// Metrics is the daemon's Prometheus registry: the node's state read at
// each scrape (a collector over Backend.Snapshot), the freezes the mount
// reported, takeover attempts, and Go's and the process's own metrics.
type Metrics struct {
	reg      *prometheus.Registry
	freeze   prometheus.Histogram
	attempts *prometheus.CounterVec
	state    *stateCollector
}

// NewMetrics makes the registry; SetBackend connects it to the daemon
// (the mount, which reports freezes, starts before the daemon is whole).
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		freeze: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "georep_freeze_seconds",
			Help:    "How long each freeze of the mount held mutating calls (repairs, failback commit, a restarting primary's check).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "georep_web_form_attempts_total",
			Help: "Takeover and failback-commit form posts, by form and outcome (done, refused, wrong-password, rate-limited, no-password, stale, bad-request).",
		}, []string{"form", "outcome"}),
		state: &stateCollector{d: newStateDescs()},
	}
	m.reg.MustRegister(m.freeze, m.attempts, m.state,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveFreeze records one freeze (fs.Options.OnThaw).
func (m *Metrics) ObserveFreeze(held time.Duration) { m.freeze.Observe(held.Seconds()) }

// SetBackend makes scrapes report the daemon's state.
func (m *Metrics) SetBackend(b Backend) { m.state.setBackend(b) }

// Registry is the registry /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The values of the one-hot gauges (arrays: nothing can change them).
var (
	roles          = [...]string{gsync.RolePrimary, gsync.RoleSecondary, gsync.RoleFenced}
	peerStates     = [...]string{gsync.StateDisconnected, gsync.StateConnected, gsync.StateFullSync, gsync.StateSyncing, gsync.StateInSync}
	failbackStates = [...]string{failover.FailbackNone, failover.FailbackInProgress, failover.FailbackCompleted, failover.FailbackCommitting}
)

// stateCollector reads the node's state at each scrape.
type stateCollector struct {
	backend atomicBackend
	d       stateDescs
}

func (c *stateCollector) setBackend(b Backend) { c.backend.store(b) }

// stateDescs describe what stateCollector reports.
type stateDescs struct {
	info, role, epoch, seq, acked, lag, pendEnt, pendBytes, lastSync, peerState, shipped, batchesOut, recordsOut, errors, batchesIn, recordsIn, cursor, applied, failback, fbPendEnt, fbPendBytes, conflicts *prometheus.Desc
}

func newStateDescs() stateDescs {
	return stateDescs{
		info:        desc("georep_node_info", "This node: its name and ID (value 1).", "node", "id"),
		role:        desc("georep_role", "1 for this node's role (primary, secondary or fenced), 0 for the others.", "role"),
		epoch:       desc("georep_epoch", "The highest epoch this node knows."),
		seq:         desc("georep_journal_seq", "The journal's last seq (on a secondary, the replica's cursor is georep_replica_cursor)."),
		acked:       desc("georep_peer_acked_seq", "The last seq the peer acknowledged (a primary's view).", "peer"),
		lag:         desc("georep_peer_lag_seconds", "How far behind the peer is: the age of the oldest change it has not acknowledged.", "peer"),
		pendEnt:     desc("georep_peer_pending_entries", "Journal records the peer has not acknowledged.", "peer"),
		pendBytes:   desc("georep_peer_pending_bytes", "File data the peer has not acknowledged, in bytes (estimated from dirty ranges).", "peer"),
		lastSync:    desc("georep_peer_last_synced_timestamp_seconds", "When the peer last acknowledged everything shipped to it (Unix time; 0: never).", "peer"),
		peerState:   desc("georep_peer_state", "1 for the peer's replication state, 0 for the others.", "peer", "state"),
		shipped:     desc("georep_bytes_shipped_total", "File data shipped to the peer since the daemon started, in bytes.", "peer"),
		batchesOut:  desc("georep_batches_shipped_total", "Batches the peer applied and acknowledged since the daemon started.", "peer"),
		recordsOut:  desc("georep_records_shipped_total", "Journal records in those batches.", "peer"),
		errors:      desc("georep_sync_errors_total", "Replication sessions that ended with an error since the daemon started: shipping to a peer, or applying on this node (peer empty).", "direction", "peer"),
		batchesIn:   desc("georep_batches_applied_total", "Batches this node applied as a secondary since the daemon started."),
		recordsIn:   desc("georep_records_applied_total", "Journal records in those batches."),
		cursor:      desc("georep_replica_cursor", "The last seq this secondary applied and acknowledged."),
		applied:     desc("georep_replica_last_applied_timestamp_seconds", "When this secondary last applied a batch (Unix time; 0: never)."),
		failback:    desc("georep_failback_state", "1 for this node's failback state (none, in-progress, completed, committing), 0 for the others.", "state"),
		fbPendEnt:   desc("georep_failback_pending_entries", "Records the primary still has to ship to this returning node."),
		fbPendBytes: desc("georep_failback_pending_bytes", "Bytes the primary still has to ship to this returning node."),
		conflicts:   desc("georep_conflict_copies", "Conflict copies kept in the backing dir (divergent writes preserved, never replicated)."),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.d.info, c.d.role, c.d.epoch, c.d.seq, c.d.acked, c.d.lag, c.d.pendEnt, c.d.pendBytes, c.d.lastSync,
		c.d.peerState, c.d.shipped, c.d.batchesOut, c.d.recordsOut, c.d.errors, c.d.batchesIn, c.d.recordsIn, c.d.cursor, c.d.applied,
		c.d.failback, c.d.fbPendEnt, c.d.fbPendBytes, c.d.conflicts} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.backend.load()
	if b == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := b.Snapshot(ctx, false)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	oneHot := func(d *prometheus.Desc, all []string, is string, labels ...string) {
		for _, s := range all {
			gauge(d, b2f(s == is), append(labels, s)...)
		}
	}
	gauge(c.d.info, 1, p.Node, p.ID)
	oneHot(c.d.role, roles[:], p.Role)
	gauge(c.d.epoch, float64(p.Epoch))
	gauge(c.d.seq, float64(p.Seq))
	for _, ps := range p.Peers {
		gauge(c.d.acked, float64(ps.AckedSeq), ps.Name)
		gauge(c.d.lag, ps.LagSeconds, ps.Name)
		gauge(c.d.pendEnt, float64(ps.PendingEntries), ps.Name)
		gauge(c.d.pendBytes, float64(ps.PendingBytes), ps.Name)
		gauge(c.d.lastSync, unix(ps.LastSynced), ps.Name)
		oneHot(c.d.peerState, peerStates[:], ps.State, ps.Name)
	}
	for name, pc := range p.Counters.Peers {
		counter(c.d.shipped, pc.BytesShipped, name)
		counter(c.d.batchesOut, pc.BatchesShipped, name)
		counter(c.d.recordsOut, pc.RecordsShipped, name)
		counter(c.d.errors, pc.Errors, "ship", name)
	}
	counter(c.d.errors, p.Counters.ApplyErrors, "apply", "")
	counter(c.d.batchesIn, p.Counters.BatchesApplied)
	counter(c.d.recordsIn, p.Counters.RecordsApplied)
	if r := p.Replica; r != nil {
		gauge(c.d.cursor, float64(r.Cursor))
		gauge(c.d.applied, unix(r.Applied))
	}
	oneHot(c.d.failback, failbackStates[:], p.Failback.State)
	gauge(c.d.fbPendEnt, float64(p.Failback.PendingEntries))
	gauge(c.d.fbPendBytes, float64(p.Failback.PendingBytes))
	n := 0
	for _, cs := range p.Conflicts {
		n += cs.Count
	}
	gauge(c.d.conflicts, float64(n))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
