package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

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
	// Peers: on a primary, every secondary's replication state.
	Peers []PeerStatus `json:"peers"`
	// Replica: on a secondary, where its copy stands.
	Replica  *ReplicaStatus `json:"replica,omitempty"`
	Hooks    HookStatus     `json:"hooks"`
	Failback FailbackStatus `json:"failback"`
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
	CursorEpoch uint64              `json:"cursor_epoch"`
	Cursor      uint64              `json:"cursor"`
	Applied     string              `json:"applied,omitempty"`
	Full        bool                `json:"needs_full_sync"`
	Repair      int                 `json:"paths_to_compare"`
	FullSync    *gsync.TreeProgress `json:"full_sync,omitempty"`
}

// HookStatus points at the hooks' log.
type HookStatus struct {
	PreSync   string `json:"pre_sync,omitempty"`
	PostApply string `json:"post_apply,omitempty"`
	Log       string `json:"log,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// FailbackStatus is the failback state of the node.
type FailbackStatus struct {
	State string `json:"state"`
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
		Usage:     "show the running daemon's role, epoch, journal seq and peers",
		UsageText: "georep status --state DIR [--json] [--max-lag DURATION]",
		Description: "With --max-lag, exits 3 when a peer lags further behind than that, or has\n" +
			"been disconnected for longer (checked on the primary).",
		Flags: []cli.Flag{stateFlag(), jsonFlag(),
			&cli.DurationFlag{Name: "max-lag", Usage: "exit 3 when a peer's lag crosses this (e.g. 30s)"}},
		Action: func(c *cli.Context) error {
			dir, err := need(c, "state")
			if err != nil {
				return err
			}
			var st Status
			if err := newControlClient(dir).getJSON(c.Context, "/v1/status", &st); err != nil {
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
	fmt.Fprintf(tw, "role\t%s\nepoch\t%d\nseq\t%d\nmount\t%s\nbacking\t%s\n", st.Role, st.Epoch, st.Seq, st.Mount, st.Backing)
	if st.Volume != "" {
		fmt.Fprintf(tw, "volume\t%s\n", st.Volume)
	}
	if st.Mode != "" {
		fmt.Fprintf(tw, "mode\t%s\n", st.Mode)
	}
	if r := st.Replica; r != nil {
		fmt.Fprintf(tw, "cursor\t%d (epoch %d)\n", r.Cursor, r.CursorEpoch)
		fmt.Fprintf(tw, "last applied\t%s\n", orNever(r.Applied))
		if r.FullSync != nil {
			fmt.Fprintf(tw, "full sync\t%d dirs, %d files, %d bytes received\n", r.FullSync.Dirs, r.FullSync.Files, r.FullSync.Bytes)
		} else if r.Full {
			fmt.Fprintf(tw, "full sync\tneeded (waiting for the primary)\n")
		}
	}
	fmt.Fprintf(tw, "failback\t%s\n", st.Failback.State)
	if st.Hooks.Log != "" {
		fmt.Fprintf(tw, "hook log\t%s\n", st.Hooks.Log)
		if st.Hooks.LastError != "" {
			fmt.Fprintf(tw, "last hook error\t%s\n", st.Hooks.LastError)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
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

func orNever(s string) string {
	if s == "" {
		return "never"
	}
	return s
}
