package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/georep/georep/failover"
	gsync "github.com/georep/georep/sync"
)

// Status is the reply of `georep status --json` (SPEC §5).
type Status struct {
	Node    string `json:"node"`
	ID      string `json:"id"`
	Role    string `json:"role"`
	Epoch   uint64 `json:"epoch"`
	Seq     uint64 `json:"seq"`
	Mount   string `json:"mount"`
	Backing string `json:"backing"`
	PID     int    `json:"pid"`
	Volume  string `json:"volume,omitempty"`
	Mode    string `json:"mode,omitempty"` // continuous, or the cron schedule
	// HTTP is the status page's address (daemon --http).
	HTTP string `json:"http,omitempty"`
	// Primary is the name of the primary this node knows of (itself when
	// it is the primary); RoleSince when it took its role.
	Primary   string `json:"primary,omitempty"`
	RoleSince string `json:"role_since,omitempty"`
	// Peers: on a primary, every secondary's replication state.
	Peers []PeerStatus `json:"peers"`
	// Replica: on a secondary, where its copy stands.
	Replica  *ReplicaStatus          `json:"replica,omitempty"`
	Hooks    HookStatus              `json:"hooks"`
	Failback failover.FailbackStatus `json:"failback"`
	// Conflicts are the conflict copies this node keeps in its backing
	// dir (never replicated).
	Conflicts []failover.ConflictSet `json:"conflicts"`
	// Nodes (status --nodes, the default in text) is every node side by
	// side, as each answers now.
	Nodes []failover.NodeStatus `json:"nodes,omitempty"`
}

// PeerStatus is one peer's replication state.
type PeerStatus struct {
	Name           string  `json:"name"`
	Addr           string  `json:"addr"`
	State          string  `json:"state"`
	StateSince     string  `json:"state_since,omitempty"`
	AckedSeq       uint64  `json:"acked_seq"`
	LastSynced     string  `json:"last_synced,omitempty"`
	LagSeconds     float64 `json:"lag_seconds"`
	PendingEntries uint64  `json:"pending_entries"`
	PendingBytes   uint64  `json:"pending_bytes"`
	BytesShipped   int64   `json:"bytes_shipped"`
	Error          string  `json:"error,omitempty"`
	// FullSync is the progress of a running full tree sync.
	FullSync *gsync.TreeProgress `json:"full_sync,omitempty"`
}

// ReplicaStatus is a secondary's copy: its cursor, when it last applied
// a batch, and a running full sync's progress.
type ReplicaStatus struct {
	CursorEpoch uint64 `json:"cursor_epoch"`
	Cursor      uint64 `json:"cursor"`
	Applied     string `json:"applied,omitempty"`
	// ValidAsOf: the last moment this copy is known to have held all the
	// primary had (the later of Applied and the primary's last in-line
	// ping).
	ValidAsOf string              `json:"valid_as_of,omitempty"`
	Full      bool                `json:"needs_full_sync"`
	Repair    int                 `json:"paths_to_compare"`
	FullSync  *gsync.TreeProgress `json:"full_sync,omitempty"`
}

// HookStatus points at the hooks' log.
type HookStatus struct {
	PreSync   string `json:"pre_sync,omitempty"`
	PostApply string `json:"post_apply,omitempty"`
	Log       string `json:"log,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the running daemon's role, epoch, journal seq and peers, and every node side by side",
		UsageText: "georep status --state DIR [--json] [--max-lag DURATION] [--local]",
		Description: "Every reachable node is asked for its role, epoch and seq (a secondary's seq\n" +
			"is its cursor), so the table shows at a glance who is primary and that no\n" +
			"replica is ahead of it; --local skips asking. With --max-lag, exits 3 when a\n" +
			"peer lags further behind than that, or has been disconnected for longer\n" +
			"(checked on the primary).",
		Flags: []cli.Flag{stateFlag(), jsonFlag(),
			&cli.DurationFlag{Name: "max-lag", Usage: "exit 3 when a peer's lag crosses this (e.g. 30s)"},
			&cli.BoolFlag{Name: "local", Usage: "do not ask the peers (no nodes table)"}},
		Action: func(c *cli.Context) error {
			dir, err := need(c, "state")
			if err != nil {
				return err
			}
			var st Status
			path := "/v1/status?nodes=1"
			if c.Bool("local") {
				path = "/v1/status"
			}
			if err := newControlClient(dir).getJSON(c.Context, path, &st); err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else if err := printStatus(c, &st); err != nil {
				return err
			}
			if max := c.Duration("max-lag"); max > 0 {
				if why := lagCrossed(&st, max, time.Now()); why != "" {
					return cli.Exit(why, exitThreshold)
				}
			}
			return nil
		},
	}
}

// lagCrossed says which peer crosses the lag threshold, if any.
func lagCrossed(st *Status, max time.Duration, now time.Time) string {
	var out []string
	for _, p := range st.Peers {
		if p.State == gsync.StateDisconnected || p.State == gsync.StateFullSync {
			since, err := time.Parse(time.RFC3339Nano, p.StateSince)
			if err == nil && now.Sub(since) > max {
				out = append(out, fmt.Sprintf("%s is %s since %s", p.Name, p.State, since.Format(time.RFC3339)))
				continue
			}
		}
		if lag := time.Duration(p.LagSeconds * float64(time.Second)); lag > max {
			out = append(out, fmt.Sprintf("%s lags %s", p.Name, lag.Round(time.Millisecond)))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return fmt.Sprintf("lag over %s: %s", max, strings.Join(out, "; "))
}

func printStatus(c *cli.Context, st *Status) error {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node\t%s (%s)\n", st.Node, st.ID)
	fmt.Fprintf(tw, "role\t%s (since %s)\n", st.Role, orNever(st.RoleSince))
	fmt.Fprintf(tw, "epoch\t%d (primary: %s)\nseq\t%d\nmount\t%s\nbacking\t%s\n", st.Epoch, orNone(st.Primary), st.Seq, st.Mount, st.Backing)
	if st.Volume != "" {
		fmt.Fprintf(tw, "volume\t%s\n", st.Volume)
	}
	if st.Mode != "" {
		fmt.Fprintf(tw, "mode\t%s\n", st.Mode)
	}
	if st.HTTP != "" {
		fmt.Fprintf(tw, "status page\t%s\n", st.HTTP)
	}
	if r := st.Replica; r != nil {
		fmt.Fprintf(tw, "cursor\t%d (epoch %d)\n", r.Cursor, r.CursorEpoch)
		fmt.Fprintf(tw, "last applied\t%s\n", orNever(r.Applied))
		fmt.Fprintf(tw, "valid as of\t%s\n", orNever(r.ValidAsOf))
		if r.FullSync != nil {
			fmt.Fprintf(tw, "full sync\t%d dirs, %d files, %d bytes received\n", r.FullSync.Dirs, r.FullSync.Files, r.FullSync.Bytes)
		} else if r.Full {
			fmt.Fprintf(tw, "full sync\tneeded (waiting for the primary)\n")
		}
	}
	printFailback(tw, &st.Failback)
	for _, cs := range st.Conflicts {
		fmt.Fprintf(tw, "conflicts\t%d copies in %s (writes of epoch %d not in %s's history; %s)\n",
			cs.Count, cs.Dir, cs.Epoch, cs.Primary, cs.Time.Format(time.RFC3339))
	}
	if st.Hooks.Log != "" {
		fmt.Fprintf(tw, "hook log\t%s\n", st.Hooks.Log)
		if st.Hooks.LastError != "" {
			fmt.Fprintf(tw, "last hook error\t%s\n", st.Hooks.LastError)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Nodes) > 0 {
		fmt.Fprintln(c.App.Writer)
		printNodes(c, st.Nodes)
	}
	if st.Replica != nil {
		return nil
	}
	fmt.Fprintln(c.App.Writer)
	tw = tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tADDRESS\tSTATE\tACKED\tLAST SYNCED\tLAG\tPENDING\tPENDING BYTES")
	for _, p := range st.Peers {
		state := p.State
		if p.FullSync != nil {
			state = fmt.Sprintf("%s (%d files, %d bytes)", state, p.FullSync.Files, p.FullSync.Bytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%.3fs\t%d\t%d\n", p.Name, p.Addr, state, p.AckedSeq,
			orNever(p.LastSynced), p.LagSeconds, p.PendingEntries, p.PendingBytes)
	}
	if len(st.Peers) == 0 {
		fmt.Fprintln(tw, "(no peers: georep peer add)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range st.Peers {
		if p.Error != "" && p.State == gsync.StateDisconnected {
			fmt.Fprintf(c.App.Writer, "%s: %s\n", p.Name, p.Error)
		}
	}
	return nil
}

// printFailback prints a failback's state and figures.
func printFailback(tw *tabwriter.Writer, fb *failover.FailbackStatus) {
	switch fb.State {
	case failover.FailbackNone:
		fmt.Fprintf(tw, "failback\tnone\n")
		if l := fb.Last; l != nil {
			fmt.Fprintf(tw, "last failback\t%s: took epoch %d over from %s, froze it %s\n",
				l.Time.Format(time.RFC3339), l.Epoch, l.From, l.Freeze.Round(time.Millisecond))
		}
	case failover.FailbackCommitting:
		fmt.Fprintf(tw, "failback\tcommitting\n")
	default:
		est := "unknown"
		if fb.Estimate >= 0 {
			est = (time.Duration(fb.Estimate * float64(time.Second))).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "failback\t%s from %s: %d entries, %s pending, lag %.3fs, estimate %s\n",
			fb.State, orNone(fb.Primary), fb.PendingEntries, humanBytes(int64(fb.PendingBytes)), fb.LagSeconds, est)
		if fb.Waiting != "" {
			fmt.Fprintf(tw, "failback waits\t%s\n", fb.Waiting)
		}
	}
}

// printNodes prints every node side by side.
func printNodes(c *cli.Context, nodes []failover.NodeStatus) {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tEPOCH\tSEQ\tPRIMARY\t")
	for _, n := range nodes {
		name := n.Name
		if n.Self {
			name += " (this node)"
		}
		if !n.Reachable {
			fmt.Fprintf(tw, "%s\tunreachable\t\t\t\t%s\n", name, oneLine(n.Error))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t\n", name, n.Role, n.Epoch, n.Seq, n.Primary)
	}
	tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func orNever(s string) string {
	if s == "" {
		return "never"
	}
	return s
}
