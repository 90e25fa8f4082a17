package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

// Status is the reply of `georep status --json` (SPEC §5).
type Status struct {
	Node     string         `json:"node"`
	ID       string         `json:"id"`
	Role     string         `json:"role"`
	Epoch    uint64         `json:"epoch"`
	Seq      uint64         `json:"seq"`
	Mount    string         `json:"mount"`
	Backing  string         `json:"backing"`
	PID      int            `json:"pid"`
	Peers    []PeerStatus   `json:"peers"`
	Failback FailbackStatus `json:"failback"`
}

// PeerStatus is one peer's replication state.
type PeerStatus struct {
	Name           string  `json:"name"`
	Addr           string  `json:"addr"`
	State          string  `json:"state"`
	AckedSeq       uint64  `json:"acked_seq"`
	LastSynced     string  `json:"last_synced,omitempty"`
	LagSeconds     float64 `json:"lag_seconds"`
	PendingEntries uint64  `json:"pending_entries"`
	PendingBytes   uint64  `json:"pending_bytes"`
}

// FailbackStatus is the failback state of the node.
type FailbackStatus struct {
	State string `json:"state"`
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the running daemon's role, epoch, journal seq and peers",
		UsageText: "georep status --state DIR [--json]",
		Flags:     []cli.Flag{stateFlag(), jsonFlag()},
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
				return enc.Encode(st)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "node\t%s (%s)\n", st.Node, st.ID)
			fmt.Fprintf(tw, "role\t%s\nepoch\t%d\nseq\t%d\nmount\t%s\nbacking\t%s\n", st.Role, st.Epoch, st.Seq, st.Mount, st.Backing)
			fmt.Fprintf(tw, "peers\t%d\nfailback\t%s\n", len(st.Peers), st.Failback.State)
			return tw.Flush()
		},
	}
}
