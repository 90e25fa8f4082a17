package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// examples gives every command (by its path below georep) one example,
// as an operator would type it. help prints it; a test checks that every
// command has one and that its flags exist.
func examples() map[string]string {
	return map[string]string{
		"init":            "georep init --state /var/lib/georep --name site-a --listen 10.0.0.1:7400 --takeover-password-file /etc/georep/takeover-password",
		"id":              "georep id --state /var/lib/georep",
		"daemon":          "georep daemon --state /var/lib/georep --backing /srv/backup --mount /srv/backup --primary --http 127.0.0.1:7480 --detach",
		"journal":         "georep journal --state /var/lib/georep --since 1200 --json",
		"status":          "georep status --state /var/lib/georep --max-lag 30s",
		"peer":            "georep peer list --state /var/lib/georep",
		"peer add":        "georep peer add --state /var/lib/georep site-b 10.0.0.2:7400 $(ssh site-b georep id --state /var/lib/georep)",
		"peer list":       "georep peer list --state /var/lib/georep --json",
		"sync":            "georep sync --state /var/lib/georep --wait --timeout 5m",
		"verify":          "georep verify --state /var/lib/georep --peer site-b",
		"failover":        "georep failover start --state /var/lib/georep",
		"failover start":  "georep failover start --state /var/lib/georep --force",
		"failback":        "georep failback status --state /var/lib/georep",
		"failback start":  "georep failback start --state /var/lib/georep --wait",
		"failback status": "georep failback status --state /var/lib/georep --json",
		"failback commit": "georep failback commit --state /var/lib/georep",
		"help":            "georep help failback commit",
	}
}

func helpCommand() *cli.Command {
	return &cli.Command{
		Name:      "help",
		Usage:     "the manual: every command with its flags and an example (georep help COMMAND for one)",
		UsageText: "georep help [COMMAND [SUBCOMMAND]]",
		Action: func(c *cli.Context) error {
			w := c.App.Writer
			if c.NArg() == 0 {
				writeManual(w, c.App)
				return nil
			}
			cmds, path := c.App.Commands, []string{}
			var cmd *cli.Command
			for _, name := range c.Args().Slice() {
				cmd = findCommand(cmds, name)
				if cmd == nil {
					return usagef("no command %q (georep help lists them all)", strings.Join(append(path, name), " "))
				}
				path = append(path, cmd.Name)
				cmds = cmd.Subcommands
			}
			writeCommand(w, path, cmd)
			return nil
		},
	}
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// writeManual prints the whole manual, man-page style.
func writeManual(w io.Writer, app *cli.App) {
	fmt.Fprintf(w, `GEOREP(1)                       georep manual                       GEOREP(1)

NAME
    georep - %s

SYNOPSIS
    georep COMMAND --state DIR [FLAGS] [ARGS]

DESCRIPTION
    georep makes a directory on Linux a replicated directory. Applications read
    and write a FUSE mount; every change is recorded in a durable, ordered
    journal before it is acknowledged, and shipped (changed names and changed
    byte ranges only) to one or more secondaries over mutually authenticated
    TLS. If the primary is lost, a secondary is promoted (failover start, or the
    takeover button of its status page); the old primary comes back with a
    background delta and a commit that stops writes for well under a second
    (failback start, then failback commit). Nothing written on either side is
    lost: writes only the old primary took become conflict copies under
    .georep/conflicts/EPOCH/ in its backing dir.

    Every command takes --state DIR (or $GEOREP_STATE), the node's state dir;
    the commands other than init, id, peer and daemon talk to the running
    daemon through the Unix socket in it.

COMMANDS
`, app.Usage)
	for _, c := range app.Commands {
		if c.Hidden {
			continue
		}
		writeCommand(w, []string{c.Name}, c)
	}
	fmt.Fprint(w, `EXIT STATUS
    0   ok
    1   failure; the reason is one line on stderr
    2   bad usage (an unknown flag, a missing argument)
    3   a health threshold is crossed (status --max-lag), or verify found
        differences

HTTP (daemon --http HOST:PORT)
    /             the status page: role, epoch, every peer's state, last valid
                  copy, lag, pending entries and bytes, failback, conflict
                  copies, the hook log's tail; the takeover form on a
                  secondary and the failback-commit form when a failback is
                  completed. Both need the takeover password; three wrong ones
                  lock the client out for 1 s, doubling to 15 min.
    /metrics      Prometheus text format (georep_* and Go runtime metrics).
    /healthz      200 "ok: …" or 503 "unhealthy: …"; ?max_lag=30s also fails
                  when a peer lags further (as status --max-lag).
    GETs never change anything; the forms are POSTs, same-origin only.

FILES
    STATE/node.json, cert.pem, key.pem   the node's identity (init)
    STATE/peers.json                     trusted peers (peer add)
    STATE/db/, STATE/journal/            the journal, index and role (badger)
    STATE/daemon.sock                    the control socket of a running daemon
    STATE/daemon.log                     the log of daemon --detach
    STATE/hooks.log                      pre-sync and post-apply hook output
    STATE/takeover.hash                  the takeover password's argon2id hash
    BACKING/.georep/                     staging and conflict copies (never
                                         visible through the mount)

ENVIRONMENT
    GEOREP_STATE    the state dir, instead of --state
    NOTIFY_SOCKET   set by systemd (Type=notify): the daemon reports READY=1

SEE ALSO
    README.md (set-up and a five-minute tour), SPEC.md (the contract),
    dist/georep@.service (a systemd unit).
`)
}

// writeCommand prints one command's section and its subcommands'.
func writeCommand(w io.Writer, path []string, c *cli.Command) {
	name := strings.Join(path, " ")
	fmt.Fprintf(w, "  georep %s\n", name)
	fmt.Fprintf(w, "    %s\n", c.Usage)
	if c.UsageText != "" {
		fmt.Fprintf(w, "\n    usage: %s\n", c.UsageText)
	}
	if c.Description != "" {
		fmt.Fprintln(w)
		for _, line := range strings.Split(strings.TrimSpace(c.Description), "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
	if len(c.Flags) > 0 {
		fmt.Fprintln(w)
		flags := append([]cli.Flag(nil), c.Flags...)
		sort.SliceStable(flags, func(i, j int) bool { return flags[i].Names()[0] < flags[j].Names()[0] })
		for _, f := range flags {
			usage := ""
			if u, ok := f.(cli.DocGenerationFlag); ok {
				usage = u.GetUsage()
			}
			fmt.Fprintf(w, "    --%-24s %s\n", f.Names()[0], usage)
		}
	}
	if ex := examples()[name]; ex != "" {
		fmt.Fprintf(w, "\n    example:\n      %s\n", ex)
	}
	fmt.Fprintln(w)
	for _, sub := range c.Subcommands {
		if !sub.Hidden {
			writeCommand(w, append(path, sub.Name), sub)
		}
	}
}
