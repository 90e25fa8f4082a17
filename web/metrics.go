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
		state: &stateCollector{},
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

var (
	roles          = []string{gsync.RolePrimary, gsync.RoleSecondary, gsync.RoleFenced}
	peerStates     = []string{gsync.StateDisconnected, gsync.StateConnected, gsync.StateFullSync, gsync.StateSyncing, gsync.StateInSync}
	failbackStates = []string{failover.FailbackNone, failover.FailbackInProgress, failover.FailbackCompleted, failover.FailbackCommitting}
)

// stateCollector reads the node's state at each scrape.
type stateCollector struct {
	backend atomicBackend
}

func (c *stateCollector) setBackend(b Backend) { c.backend.store(b) }

var (
	dInfo        = desc("georep_node_info", "This node: its name and ID (value 1).", "node", "id")
	dRole        = desc("georep_role", "1 for this node's role (primary, secondary or fenced), 0 for the others.", "role")
	dEpoch       = desc("georep_epoch", "The highest epoch this node knows.")
	dSeq         = desc("georep_journal_seq", "The journal's last seq (on a secondary, the replica's cursor is georep_replica_cursor).")
	dAcked       = desc("georep_peer_acked_seq", "The last seq the peer acknowledged (a primary's view).", "peer")
	dLag         = desc("georep_peer_lag_seconds", "How far behind the peer is: the age of the oldest change it has not acknowledged.", "peer")
	dPendEnt     = desc("georep_peer_pending_entries", "Journal records the peer has not acknowledged.", "peer")
	dPendBytes   = desc("georep_peer_pending_bytes", "File data the peer has not acknowledged, in bytes (estimated from dirty ranges).", "peer")
	dLastSync    = desc("georep_peer_last_synced_timestamp_seconds", "When the peer last acknowledged everything shipped to it (Unix time; 0: never).", "peer")
	dPeerState   = desc("georep_peer_state", "1 for the peer's replication state, 0 for the others.", "peer", "state")
	dShipped     = desc("georep_bytes_shipped_total", "File data shipped to the peer since the daemon started, in bytes.", "peer")
	dBatchesOut  = desc("georep_batches_shipped_total", "Batches the peer applied and acknowledged since the daemon started.", "peer")
	dRecordsOut  = desc("georep_records_shipped_total", "Journal records in those batches.", "peer")
	dErrors      = desc("georep_sync_errors_total", "Replication sessions that ended with an error since the daemon started: shipping to a peer, or applying on this node (peer empty).", "direction", "peer")
	dBatchesIn   = desc("georep_batches_applied_total", "Batches this node applied as a secondary since the daemon started.")
	dRecordsIn   = desc("georep_records_applied_total", "Journal records in those batches.")
	dCursor      = desc("georep_replica_cursor", "The last seq this secondary applied and acknowledged.")
	dApplied     = desc("georep_replica_last_applied_timestamp_seconds", "When this secondary last applied a batch (Unix time; 0: never).")
	dFailback    = desc("georep_failback_state", "1 for this node's failback state (none, in-progress, completed, committing), 0 for the others.", "state")
	dFbPendEnt   = desc("georep_failback_pending_entries", "Records the primary still has to ship to this returning node.")
	dFbPendBytes = desc("georep_failback_pending_bytes", "Bytes the primary still has to ship to this returning node.")
	dConflicts   = desc("georep_conflict_copies", "Conflict copies kept in the backing dir (divergent writes preserved, never replicated).")
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dInfo, dRole, dEpoch, dSeq, dAcked, dLag, dPendEnt, dPendBytes, dLastSync,
		dPeerState, dShipped, dBatchesOut, dRecordsOut, dErrors, dBatchesIn, dRecordsIn, dCursor, dApplied,
		dFailback, dFbPendEnt, dFbPendBytes, dConflicts} {
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
	gauge(dInfo, 1, p.Node, p.ID)
	oneHot(dRole, roles, p.Role)
	gauge(dEpoch, float64(p.Epoch))
	gauge(dSeq, float64(p.Seq))
	for _, ps := range p.Peers {
		gauge(dAcked, float64(ps.AckedSeq), ps.Name)
		gauge(dLag, ps.LagSeconds, ps.Name)
		gauge(dPendEnt, float64(ps.PendingEntries), ps.Name)
		gauge(dPendBytes, float64(ps.PendingBytes), ps.Name)
		gauge(dLastSync, unix(ps.LastSynced), ps.Name)
		oneHot(dPeerState, peerStates, ps.State, ps.Name)
	}
	for name, pc := range p.Counters.Peers {
		counter(dShipped, pc.BytesShipped, name)
		counter(dBatchesOut, pc.BatchesShipped, name)
		counter(dRecordsOut, pc.RecordsShipped, name)
		counter(dErrors, pc.Errors, "ship", name)
	}
	counter(dErrors, p.Counters.ApplyErrors, "apply", "")
	counter(dBatchesIn, p.Counters.BatchesApplied)
	counter(dRecordsIn, p.Counters.RecordsApplied)
	if r := p.Replica; r != nil {
		gauge(dCursor, float64(r.Cursor))
		gauge(dApplied, unix(r.Applied))
	}
	oneHot(dFailback, failbackStates, p.Failback.State)
	gauge(dFbPendEnt, float64(p.Failback.PendingEntries))
	gauge(dFbPendBytes, float64(p.Failback.PendingBytes))
	n := 0
	for _, cs := range p.Conflicts {
		n += cs.Count
	}
	gauge(dConflicts, float64(n))
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
