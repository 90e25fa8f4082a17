package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	gsync "github.com/georep/georep/sync"
)

func syncCommand() *cli.Command {
	return &cli.Command{
		Name:      "sync",
		Usage:     "ship now; with --wait, return once every secondary acknowledged the current seq",
		UsageText: "georep sync --state DIR [--wait] [--timeout DURATION] [--json]",
		Description: "Runs the pre-sync hook (if the daemon has one), ends open write sessions and\n" +
			"makes every shipper send what the journal holds. On a terminal, --wait shows\n" +
			"a progress bar.",
		Flags: []cli.Flag{stateFlag(), jsonFlag(),
			&cli.BoolFlag{Name: "wait", Usage: "wait until every secondary has acknowledged"},
			&cli.DurationFlag{Name: "timeout", Value: 0, Usage: "give up waiting after this long (0: never)"},
		},
		Action: func(c *cli.Context) error {
			dir, err := need(c, "state")
			if err != nil {
				return err
			}
			cc := newControlClient(dir)
			var reply struct {
				Target uint64 `json:"target"`
			}
			if err := cc.doJSON(c.Context, http.MethodPost, "/v1/sync", &reply); err != nil {
				return err
			}
			if !c.Bool("wait") {
				fmt.Fprintf(c.App.Writer, "sync started; target seq %d\n", reply.Target)
				return nil
			}
			ctx := c.Context
			if t := c.Duration("timeout"); t > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, t)
				defer cancel()
			}
			st, err := waitSynced(ctx, cc, reply.Target, !c.Bool("json") && term.IsTerminal(int(os.Stdout.Fd())))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeOut(c, map[string]any{"target": reply.Target, "peers": st.Peers})
			}
			fmt.Fprintf(c.App.Writer, "every secondary has seq %d\n", reply.Target)
			return nil
		},
	}
}

// waitSynced polls the daemon until every peer acknowledged target.
func waitSynced(ctx context.Context, cc *controlClient, target uint64, bar bool) (*Status, error) {
	var pb *progressbar.ProgressBar
	defer func() {
		if pb != nil {
			pb.Finish()
		}
	}()
	var start uint64
	first := true
	for {
		var st Status
		if err := cc.getJSON(ctx, "/v1/status", &st); err != nil {
			return nil, err
		}
		low, done := target, true
		var files, bytes int64
		for _, p := range st.Peers {
			// A peer counts once it is connected, past any full sync,
			// and has acknowledged the target.
			live := p.State == gsync.StateInSync || p.State == gsync.StateSyncing
			if p.AckedSeq < target || p.FullSync != nil || !live {
				done = false
			}
			low = min(low, p.AckedSeq)
			if p.FullSync != nil {
				files += p.FullSync.Files
				bytes += p.FullSync.Bytes
			}
		}
		if len(st.Peers) == 0 {
			return nil, fmt.Errorf("this node has no peers to wait for")
		}
		if first {
			start, first = low, false
			if bar && !done {
				pb = progressbar.NewOptions64(int64(target-start), progressbar.OptionSetDescription("syncing"),
					progressbar.OptionShowCount(), progressbar.OptionSetWriter(os.Stderr), progressbar.OptionClearOnFinish())
			}
		}
		if pb != nil {
			if files > 0 {
				pb.Describe(fmt.Sprintf("full sync: %d files, %s", files, humanBytes(bytes)))
			} else {
				pb.Describe("syncing")
			}
			pb.Set64(int64(low - min(low, start)))
		}
		if done {
			return &st, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("not every secondary has seq %d yet: %w", target, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
