package main

import (
	"fmt"
	"net/url"
	"sort"

	"github.com/urfave/cli/v2"

	gsync "github.com/georep/georep/sync"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "compare the trees of the primary and its secondaries by content hash; exit 3 on differences",
		UsageText: "georep verify --state DIR [--peer NAME] [--json]",
		Description: "Run it on the primary. Both sides hash every file; entries are compared by\n" +
			"type, mode, owner, size, content, mtime, link target, device, xattrs and link\n" +
			"count. Changes made while it runs show up as differences: run it after\n" +
			"`georep sync --wait` on a quiet volume for an exact answer.",
		Flags: []cli.Flag{stateFlag(), jsonFlag(), &cli.StringFlag{Name: "peer", Usage: "only this peer"}},
		Action: func(c *cli.Context) error {
			dir, err := need(c, "state")
			if err != nil {
				return err
			}
			var diffs map[string][]gsync.Difference
			path := "/v1/verify?peer=" + url.QueryEscape(c.String("peer"))
			if err := newControlClient(dir).getJSON(c.Context, path, &diffs); err != nil {
				return err
			}
			n := 0
			for _, d := range diffs {
				n += len(d)
			}
			if c.Bool("json") {
				if err := writeOut(c, diffs); err != nil {
					return err
				}
			} else {
				peers := make([]string, 0, len(diffs))
				for p := range diffs {
					peers = append(peers, p)
				}
				sort.Strings(peers)
				for _, p := range peers {
					if len(diffs[p]) == 0 {
						fmt.Fprintf(c.App.Writer, "%s: identical\n", p)
						continue
					}
					fmt.Fprintf(c.App.Writer, "%s: %d differences\n", p, len(diffs[p]))
					for _, d := range diffs[p] {
						if d.Primary != "" || d.Replica != "" {
							fmt.Fprintf(c.App.Writer, "  %s: %s (primary %s, replica %s)\n", d.Path, d.What, d.Primary, d.Replica)
						} else {
							fmt.Fprintf(c.App.Writer, "  %s: %s\n", d.Path, d.What)
						}
					}
				}
			}
			if n > 0 {
				return cli.Exit("", exitThreshold)
			}
			return nil
		},
	}
}
