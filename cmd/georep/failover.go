package main

import (
	"fmt"
	"net/http"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/georep/georep/failover"
)

func failoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "failover",
		Usage: "promote this secondary to primary",
		Subcommands: []*cli.Command{{
			Name:      "start",
			Usage:     "promote this node: epoch+1, its mount becomes writable, the other nodes follow it",
			UsageText: "georep failover start --state DIR [--force] [--json]",
			Description: "Run it on the secondary to promote when the primary is down. It asks every\n" +
				"reachable node where it stands first and refuses, saying why, when the primary\n" +
				"is still alive, when another secondary is ahead of this one (promote that one),\n" +
				"or when this replica is not a consistent copy yet. --force promotes anyway:\n" +
				"whatever a node holds that this one does not becomes conflict copies on that\n" +
				"node (.georep/conflicts/<epoch>/ in its backing dir), never lost. The old\n" +
				"primary fences itself (EROFS) as soon as it hears of the new epoch.",
			Flags: []cli.Flag{stateFlag(), jsonFlag(),
				&cli.BoolFlag{Name: "force", Usage: "promote even when the checks refuse"}},
			Action: func(c *cli.Context) error {
				dir, err := need(c, "state")
				if err != nil {
					return err
				}
				path := "/v1/failover"
				if c.Bool("force") {
					path += "?force=1"
				}
				var rep failover.Report
				if err := newControlClient(dir).doJSON(c.Context, http.MethodPost, path, &rep); err != nil {
					return err
				}
				if c.Bool("json") {
					return writeOut(c, rep)
				}
				w := c.App.Writer
				fmt.Fprintf(w, "%s is the primary of epoch %d; its records follow seq %d.\n", rep.Node, rep.Epoch, rep.Start)
				for _, m := range rep.Warnings {
					fmt.Fprintf(w, "forced past: %s\n", m)
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PEER\tROLE\tEPOCH\tSEQ\t")
				for _, p := range rep.Peers {
					if !p.Reachable {
						fmt.Fprintf(tw, "%s\tunreachable\t\t\t%s\n", p.Name, oneLine(p.Error))
						continue
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t\n", p.Name, p.Role, p.Epoch, p.Seq)
				}
				return tw.Flush()
			},
		}},
	}
}
