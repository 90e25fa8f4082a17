package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/georep/georep/journal"
	"github.com/georep/georep/node"
)

func journalCommand() *cli.Command {
	return &cli.Command{
		Name:      "journal",
		Usage:     "list journal records (JSON: one object per line)",
		UsageText: "georep journal --state DIR [--since SEQ] [--json]",
		Flags: []cli.Flag{
			stateFlag(),
			&cli.Uint64Flag{Name: "since", Usage: "list records with seq greater than SEQ"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			dir, err := need(c, "state")
			if err != nil {
				return err
			}
			out := bufio.NewWriter(c.App.Writer)
			defer out.Flush()
			emit := func(r *journal.Record) error {
				if c.Bool("json") {
					js, err := json.Marshal(r)
					if err != nil {
						return err
					}
					out.Write(append(js, '\n'))
					return nil
				}
				_, err := fmt.Fprintln(out, formatRecord(r))
				return err
			}
			return readJournal(c.Context, dir, c.Uint64("since"), emit)
		},
	}
}

// readJournal lists records through the running daemon or, when none
// runs, by opening the state dir itself.
func readJournal(ctx context.Context, dir string, since uint64, emit func(*journal.Record) error) error {
	body, err := newControlClient(dir).get(ctx, "/v1/journal?since="+strconv.FormatUint(since, 10))
	if errors.Is(err, errNoDaemon) {
		n, err := node.Open(dir, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		defer n.Close()
		if err := n.Journal.Flush(ctx); err != nil {
			return err
		}
		var emitErr error
		err = n.Journal.Since(ctx, since, func(r *journal.Record) bool {
			emitErr = emit(r)
			return emitErr == nil
		})
		return errors.Join(err, emitErr)
	}
	if err != nil {
		return err
	}
	defer body.Close()
	dec := json.NewDecoder(body)
	for {
		var r journal.Record
		if err := dec.Decode(&r); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("read journal from daemon: %w", err)
		}
		if err := emit(&r); err != nil {
			return err
		}
	}
}

// serveJournal streams records after ?since= as JSON lines.
func serveJournal(j *journal.Journal) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		since, err := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
		if err != nil && r.URL.Query().Get("since") != "" {
			writeError(w, http.StatusBadRequest, fmt.Errorf("bad since: %w", err))
			return
		}
		if err := j.Flush(r.Context()); err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		bw := bufio.NewWriter(w)
		enc := json.NewEncoder(bw)
		j.Since(r.Context(), since, func(rec *journal.Record) bool {
			return enc.Encode(rec) == nil
		})
		bw.Flush()
	}
}

// formatRecord is the human form of a record.
func formatRecord(r *journal.Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\t%d\t%s\t%s\t%q", r.Seq, r.Epoch, r.Time.Format("2006-01-02T15:04:05.000000Z07:00"), r.Op, r.Path)
	if r.NewPath != "" {
		fmt.Fprintf(&b, " -> %q", r.NewPath)
	}
	if len(r.Ranges) > 0 {
		fmt.Fprintf(&b, " %v", r.Ranges)
	}
	if r.Whole {
		b.WriteString(" whole")
	}
	return b.String()
}
