// Command georep makes a directory a replicated directory: a journaled
// FUSE mount whose changes are shipped to secondaries (see SPEC.md).
//
// One file per command group: init.go (init, id), daemon.go, journal.go,
// status.go, peer.go, sync.go, verify.go, failover.go, failback.go,
// help.go (the manual); detach.go is daemon --detach and systemd's
// readiness notice;
// control.go is the daemon's control socket and its client, api.go the
// control API the daemon serves on it.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes (SPEC §4.18).
const (
	exitOK        = 0
	exitFailure   = 1
	exitUsage     = 2
	exitThreshold = 3
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// usageError is a bad invocation: exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// commands are georep's commands, in the order help lists them.
func commands() []*cli.Command {
	return []*cli.Command{
		initCommand(),
		idCommand(),
		daemonCommand(),
		journalCommand(),
		statusCommand(),
		peerCommand(),
		syncCommand(),
		verifyCommand(),
		failoverCommand(),
		failbackCommand(),
		helpCommand(),
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	app := &cli.App{
		Name:      "georep",
		Usage:     "a replicated directory: journaled FUSE mount, delta sync, failover and failback",
		Writer:    stdout,
		ErrWriter: stderr,
		OnUsageError: func(c *cli.Context, err error, isSub bool) error {
			return usageError{err.Error()}
		},
		ExitErrHandler:  func(*cli.Context, error) {},
		HideHelpCommand: true, // help is the manual (help.go)
		Commands:        commands(),
	}
	var setUsage func([]*cli.Command)
	setUsage = func(cs []*cli.Command) {
		for _, c := range cs {
			c.OnUsageError = app.OnUsageError
			setUsage(c.Subcommands)
		}
	}
	setUsage(app.Commands)
	err := app.Run(args)
	if err == nil {
		return exitOK
	}
	code := exitFailure
	var ue usageError
	var ec cli.ExitCoder
	switch {
	case errors.As(err, &ue), strings.HasPrefix(err.Error(), "flag provided but not defined"),
		strings.HasPrefix(err.Error(), "Required flag"):
		code = exitUsage
	case errors.As(err, &ec):
		code = ec.ExitCode()
	}
	if msg := strings.TrimSpace(err.Error()); msg != "" {
		fmt.Fprintf(stderr, "georep: %s\n", oneLine(msg))
	}
	return code
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func stateFlag() cli.Flag {
	return &cli.StringFlag{Name: "state", Usage: "the node's state dir", EnvVars: []string{"GEOREP_STATE"}}
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "machine-readable output"}
}

// need returns the value of a flag that must be given.
func need(c *cli.Context, name string) (string, error) {
	v := c.String(name)
	if v == "" {
		return "", usagef("--%s is required (see georep %s --help)", name, c.Command.Name)
	}
	return v, nil
}

// writeOut writes v as indented JSON.
func writeOut(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
