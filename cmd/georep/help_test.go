package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// allCommands walks the command tree: path → command.
func allCommands(prefix []string, cmds []*cli.Command, out map[string]*cli.Command) {
	for _, c := range cmds {
		path := append(append([]string(nil), prefix...), c.Name)
		out[strings.Join(path, " ")] = c
		allCommands(path, c.Subcommands, out)
	}
}

// TestEveryCommandHasAnExample: each command has an example that runs
// that command (a group's runs one of its subcommands) with flags it has.
func TestEveryCommandHasAnExample(t *testing.T) {
	cmds := map[string]*cli.Command{}
	allCommands(nil, commands(), cmds)
	ex := examples()
	for path := range cmds {
		e, ok := ex[path]
		if !ok {
			t.Errorf("georep %s has no example", path)
			continue
		}
		words := strings.Fields(e)
		if words[0] != "georep" {
			t.Errorf("example of %s does not start with georep: %q", path, e)
			continue
		}
		// The command the example runs: the longest known path.
		target, at := "", 1
		for i := 2; i <= len(words); i++ {
			if _, ok := cmds[strings.Join(words[1:i], " ")]; ok {
				target, at = strings.Join(words[1:i], " "), i
			}
		}
		if path != "help" && !strings.HasPrefix(target, path) {
			t.Errorf("example of %s runs %q", path, target)
			continue
		}
		tc := cmds[target]
		for _, w := range words[at:] {
			if !strings.HasPrefix(w, "--") {
				continue
			}
			name := strings.SplitN(strings.TrimPrefix(w, "--"), "=", 2)[0]
			found := false
			for _, f := range tc.Flags {
				for _, n := range f.Names() {
					found = found || n == name
				}
			}
			if !found {
				t.Errorf("example of %s: georep %s has no flag --%s", path, target, name)
			}
		}
	}
	for path := range ex {
		if _, ok := cmds[path]; !ok {
			t.Errorf("example for a command that does not exist: %s", path)
		}
	}
}

// TestHelpManual: georep help covers every command with its example;
// georep help CMD prints that command; an unknown one is bad usage.
func TestHelpManual(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"georep", "help"}, &out, &errb); code != 0 {
		t.Fatalf("georep help: exit %d: %s", code, errb.String())
	}
	man := out.String()
	for _, section := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "HTTP", "FILES", "ENVIRONMENT", "SEE ALSO"} {
		if !strings.Contains(man, "\n"+section) {
			t.Errorf("manual lacks section %s", section)
		}
	}
	cmds := map[string]*cli.Command{}
	allCommands(nil, commands(), cmds)
	for path := range cmds {
		if !strings.Contains(man, "  georep "+path+"\n") {
			t.Errorf("manual lacks georep %s", path)
		}
		if !strings.Contains(man, examples()[path]) {
			t.Errorf("manual lacks the example of %s", path)
		}
	}
	out.Reset()
	if code := run([]string{"georep", "help", "failback", "commit"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "georep failback commit") || strings.Contains(out.String(), "georep init") {
		t.Errorf("help failback commit: exit %d\n%s", code, out.String())
	}
	errb.Reset()
	if code := run([]string{"georep", "help", "nope"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), `no command "nope"`) {
		t.Errorf("help nope: exit %d, %q", code, errb.String())
	}
}
