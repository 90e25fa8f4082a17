package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/georep/georep/node"
)

func peerCommand() *cli.Command {
	return &cli.Command{
		Name:  "peer",
		Usage: "manage the peers this node trusts",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "trust a peer: its name, address and node ID (both sides do this)",
				UsageText: "georep peer add --state DIR NAME HOST:PORT NODEID",
				Flags:     []cli.Flag{stateFlag()},
				Action: func(c *cli.Context) error {
					dir, err := need(c, "state")
					if err != nil {
						return err
					}
					if c.NArg() != 3 {
						return usagef("peer add takes NAME HOST:PORT NODEID")
					}
					p := node.Peer{Name: c.Args().Get(0), Addr: c.Args().Get(1), ID: c.Args().Get(2)}
					if err := node.AddPeer(dir, p); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "trusting %s at %s (%s)\n", p.Name, p.Addr, p.ID)
					return nil
				},
			},
			{
				Name:      "list",
				Usage:     "list the trusted peers",
				UsageText: "georep peer list --state DIR [--json]",
				Flags:     []cli.Flag{stateFlag(), jsonFlag()},
				Action: func(c *cli.Context) error {
					dir, err := need(c, "state")
					if err != nil {
						return err
					}
					if _, err := node.Load(dir); err != nil {
						return err
					}
					ps, err := node.Peers(dir)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						if ps == nil {
							ps = []node.Peer{}
						}
						return json.NewEncoder(c.App.Writer).Encode(ps)
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tADDRESS\tNODE ID")
					for _, p := range ps {
						fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, p.Addr, p.ID)
					}
					return tw.Flush()
				},
			},
		},
	}
}
