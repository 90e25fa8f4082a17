package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/georep/georep/node"
	"github.com/georep/georep/web"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a node identity (key, self-signed certificate) in a state dir; prints the node ID",
		UsageText: "georep init --state DIR --name NAME [--listen HOST:PORT] [--takeover-password-file FILE]",
		Flags: []cli.Flag{
			stateFlag(),
			&cli.StringFlag{Name: "name", Usage: "the node's name"},
			&cli.StringFlag{Name: "listen", Usage: "address peers reach this node at (HOST:PORT)"},
			&cli.StringFlag{Name: "takeover-password-file", Usage: "the status page's takeover password: this file's first line (only its hash is stored)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("init takes no arguments")
			}
			dir, err := need(c, "state")
			if err != nil {
				return err
			}
			name, err := need(c, "name")
			if err != nil {
				return err
			}
			var pw []byte
			if pf := c.String("takeover-password-file"); pf != "" {
				// Read first: a bad password file leaves no half-made node.
				if pw, err = web.ReadPasswordFile(pf); err != nil {
					return err
				}
			}
			id, err := node.Init(dir, name, c.String("listen"))
			if err != nil {
				return err
			}
			if pw != nil {
				if err := web.SetPassword(dir, pw); err != nil {
					return err
				}
			}
			fmt.Fprintln(c.App.Writer, id.ID)
			return nil
		},
	}
}

func idCommand() *cli.Command {
	return &cli.Command{
		Name:      "id",
		Usage:     "print the node ID (certificate fingerprint)",
		UsageText: "georep id --state DIR",
		Flags:     []cli.Flag{stateFlag()},
		Action: func(c *cli.Context) error {
			dir, err := need(c, "state")
			if err != nil {
				return err
			}
			id, err := node.Load(dir)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, id.ID)
			return nil
		},
	}
}
