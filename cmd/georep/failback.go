package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/georep/georep/failover"
)

func failbackCommand() *cli.Command {
	return &cli.Command{
		Name:  "failback",
		Usage: "make this node (the old primary) primary again: background delta, then a short commit",
		Description: "Run every subcommand on the node that is to become primary again.\n" +
			"  start   follow the current primary and catch up in the background (no downtime)\n" +
			"  status  in-progress or completed, with pending entries, bytes and an estimate\n" +
			"  commit  freeze the current primary, ship the last batch, swap roles, thaw",
		Subcommands: []*cli.Command{
			{
				Name:      "start",
				Usage:     "follow the current primary and catch up in the background",
				UsageText: "georep failback start --state DIR [--wait] [--timeout DURATION] [--json]",
				Description: "This node's writes that the current primary does not have are kept as\n" +
					"conflict copies (.georep/conflicts/<epoch>/ in its backing dir); the primary's\n" +
					"changes since the failover and the diverged paths travel to it while\n" +
					"applications keep writing to the primary. --wait shows a progress bar until\n" +
					"the failback is completed.",
				Flags: []cli.Flag{stateFlag(), jsonFlag(),
					&cli.BoolFlag{Name: "wait", Usage: "wait until completed (a progress bar on a terminal)"},
					&cli.DurationFlag{Name: "timeout", Usage: "give up waiting after this long (0: never)"}},
				Action: func(c *cli.Context) error {
					dir, err := need(c, "state")
					if err != nil {
						return err
					}
					cc := newControlClient(dir)
					var fs failover.FailbackStatus
					if err := cc.doJSON(c.Context, http.MethodPost, "/v1/failback/start", &fs); err != nil {
						return err
					}
					if c.Bool("wait") {
						ctx := c.Context
						if t := c.Duration("timeout"); t > 0 {
							var cancel context.CancelFunc
							ctx, cancel = context.WithTimeout(ctx, t)
							defer cancel()
						}
						bar := !c.Bool("json") && term.IsTerminal(int(os.Stdout.Fd()))
						if fs, err = waitCompleted(ctx, cc, bar); err != nil {
							return err
						}
					}
					if c.Bool("json") {
						return writeOut(c, fs)
					}
					if fs.State != failover.FailbackCompleted {
						fmt.Fprintf(c.App.Writer, "failback started; georep failback status --state %s shows its progress\n", dir)
					}
					return printFailbackStatus(c, &fs)
				},
			},
			{
				Name:      "status",
				Usage:     "in-progress or completed, with pending entries, bytes and an estimate",
				UsageText: "georep failback status --state DIR [--json]",
				Flags:     []cli.Flag{stateFlag(), jsonFlag()},
				Action: func(c *cli.Context) error {
					dir, err := need(c, "state")
					if err != nil {
						return err
					}
					var fs failover.FailbackStatus
					if err := newControlClient(dir).getJSON(c.Context, "/v1/failback", &fs); err != nil {
						return err
					}
					if c.Bool("json") {
						return writeOut(c, fs)
					}
					return printFailbackStatus(c, &fs)
				},
			},
			{
				Name:      "commit",
				Usage:     "freeze the current primary, ship the last batch, swap roles (epoch+1), thaw",
				UsageText: "georep failback commit --state DIR [--json]",
				Description: "Runs once failback status says completed. Writers on the current primary\n" +
					"block (they do not fail) while it runs; then that mount is read-only and this\n" +
					"one writable. It prints how long the primary was frozen. If anything fails\n" +
					"before the roles swap, the primary thaws as it was and the reason is printed.",
				Flags: []cli.Flag{stateFlag(), jsonFlag()},
				Action: func(c *cli.Context) error {
					dir, err := need(c, "state")
					if err != nil {
						return err
					}
					var rep failover.CommitReport
					if err := newControlClient(dir).doJSON(c.Context, http.MethodPost, "/v1/failback/commit", &rep); err != nil {
						return err
					}
					if c.Bool("json") {
						return writeOut(c, rep)
					}
					fmt.Fprintf(c.App.Writer, "failback committed: %s is the primary of epoch %d; %s is its secondary\n", rep.Node, rep.Epoch, rep.From)
					if rep.FreezeKnown {
						fmt.Fprintf(c.App.Writer, "%s was frozen for %s\n", rep.From, rep.Freeze.Round(100*time.Microsecond))
					} else {
						fmt.Fprintf(c.App.Writer, "%s did not report how long it was frozen (its answer was lost)\n", rep.From)
					}
					return nil
				},
			},
		},
	}
}

// waitCompleted polls the failback until it is completed.
func waitCompleted(ctx context.Context, cc *controlClient, bar bool) (failover.FailbackStatus, error) {
	var pb *progressbar.ProgressBar
	defer func() {
		if pb != nil {
			pb.Finish()
		}
	}()
	var first uint64
	for {
		var fs failover.FailbackStatus
		if err := cc.getJSON(ctx, "/v1/failback", &fs); err != nil {
			return fs, err
		}
		switch fs.State {
		case failover.FailbackCompleted:
			return fs, nil
		case failover.FailbackNone:
			return fs, fmt.Errorf("the failback was ended meanwhile")
		}
		pending := fs.PendingEntries
		if bar && pb == nil && pending > 0 {
			first = pending
			pb = progressbar.NewOptions64(int64(first), progressbar.OptionSetDescription("failback"),
				progressbar.OptionShowCount(), progressbar.OptionSetWriter(os.Stderr), progressbar.OptionClearOnFinish())
		}
		if pb != nil {
			if pending > first {
				first = pending
				pb.ChangeMax64(int64(first))
			}
			desc := fmt.Sprintf("failback: %s pending", humanBytes(int64(fs.PendingBytes)))
			if fs.Waiting != "" {
				desc = "failback: " + fs.Waiting
			}
			pb.Describe(desc)
			pb.Set64(int64(first - pending))
		}
		select {
		case <-ctx.Done():
			return fs, fmt.Errorf("failback not completed yet (%s): %w", fs.Waiting, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func printFailbackStatus(c *cli.Context, fs *failover.FailbackStatus) error {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	printFailback(tw, fs)
	if fs.State == failover.FailbackCompleted {
		fmt.Fprintf(tw, "next\tgeorep failback commit\n")
	}
	return tw.Flush()
}
