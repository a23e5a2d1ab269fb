package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/txoutbox/outbox"
)

const deadUsage = `Usage: outbox dead list|requeue|purge --store URL [filters]

Inspects and repairs dead letters: messages whose publish failed permanently or too often.
  list      print them, oldest first (a table, or --json with payloads)
  requeue   make them pending again: due now, attempts reset; the relay publishes them
  purge     delete them for good

Filters combine: --id (repeatable), --type, --key. requeue and purge without a filter need --all,
so that a forgotten flag never touches every dead letter.`

// idList is a repeatable --id flag.
type idList []string

func (l *idList) String() string { return strings.Join(*l, ",") }

func (l *idList) Set(v string) error {
	for _, id := range strings.Split(v, ",") {
		if _, err := uuid.Parse(strings.TrimSpace(id)); err != nil {
			return errors.New("not a message ID (a UUID)")
		}
		*l = append(*l, strings.TrimSpace(id))
	}
	return nil
}

func runDead(ctx context.Context, e *env, args []string) error {
	const cmd = "outbox dead"
	if len(args) == 0 {
		return usagef(cmd, "no subcommand: want list, requeue or purge")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(e.stdout, deadUsage)
		fmt.Fprintln(e.stdout, "\nRun \"outbox dead <list|requeue|purge> --help\" for the flags.")
		return nil
	case "list", "requeue", "purge":
		return deadCommand(ctx, e, args[0], args[1:])
	}
	return usagef(cmd, "unknown subcommand (not repeated: it may hold a secret); want list, requeue or purge")
}

func deadCommand(ctx context.Context, e *env, op string, args []string) error {
	cmd := "outbox dead " + op
	f := newFlags(cmd, deadUsage)
	sf := addStoreFlags(f)
	var ids idList
	var filter outbox.DeadFilter
	f.fs.Var(&ids, "id", "only the message with this ID (repeatable, or comma-separated)")
	f.kinds["id"] = "a message ID (a UUID)"
	f.fs.StringVar(&filter.Type, "type", "", "only messages of this type")
	f.fs.StringVar(&filter.Key, "key", "", "only messages with this key")
	f.fs.IntVar(&filter.Limit, "limit", 0, "at most this many, oldest first (list: default 100; requeue, purge: no limit)")
	all := f.fs.Bool("all", false, "requeue or purge: act on every dead letter when no filter is given")
	asJSON := f.fs.Bool("json", false, "list: print JSON, payloads included")
	timeout := f.fs.Duration("timeout", time.Minute, "bound on the whole command")
	if err := f.parse(e, args, false); err != nil {
		return err
	}
	filter.IDs = ids
	switch {
	case filter.Limit < 0:
		return usagef(cmd, "--limit: must not be negative")
	case op != "list" && *asJSON:
		return usagef(cmd, "--json applies to list only")
	case op == "list" && *all:
		return usagef(cmd, "--all applies to requeue and purge only")
	case op != "list" && !*all && len(filter.IDs) == 0 && filter.Type == "" && filter.Key == "":
		return usagef(cmd, "no filter: give --id, --type or --key, or --all for every dead letter")
	}
	ctx, store, done, err := sf.open(ctx, cmd, *timeout)
	if err != nil {
		return err
	}
	defer done()
	if err := store.checkSchema(ctx); err != nil {
		return failed(cmd, err)
	}

	switch op {
	case "list":
		dead, err := store.ListDead(ctx, filter)
		if err != nil {
			return failed(cmd, err)
		}
		if *asJSON {
			return writeJSON(e.stdout, deadJSON(dead))
		}
		printDead(e.stdout, dead)
	case "requeue":
		n, err := store.Requeue(ctx, filter)
		if err != nil {
			return failed(cmd, err)
		}
		fmt.Fprintf(e.stdout, "requeued %d dead letter(s); the relay publishes them now\n", n)
	case "purge":
		n, err := store.Purge(ctx, filter)
		if err != nil {
			return failed(cmd, err)
		}
		fmt.Fprintf(e.stdout, "purged %d dead letter(s)\n", n)
	}
	return nil
}

// deadLetter is the JSON of one listed dead letter.
type deadLetter struct {
	ID        string            `json:"id"`
	Type      string            `json:"type"`
	Key       string            `json:"key,omitempty"`
	Payload   rawJSON           `json:"payload"`
	Result    rawJSON           `json:"result,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	Attempts  int               `json:"attempts"`
	LastError string            `json:"last_error"`
	DiedAt    time.Time         `json:"died_at"`
}

// rawJSON embeds stored JSON as is, or as a string when it is corrupt (which may be why the
// message died), so the listing itself never fails.
type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	if !json.Valid(r) {
		return json.Marshal(string(r))
	}
	return r, nil
}

// UnmarshalJSON keeps the JSON as it is, so scripts in Go can read the listing back.
func (r *rawJSON) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

func deadJSON(dead []outbox.DeadLetter) []deadLetter {
	out := make([]deadLetter, 0, len(dead))
	for _, d := range dead {
		out = append(out, deadLetter{
			ID: d.ID, Type: d.Type, Key: d.Key, Payload: rawJSON(d.Payload), Result: rawJSON(d.Result),
			Headers: d.Headers, CreatedAt: d.CreatedAt, Attempts: d.Attempts, LastError: d.LastError, DiedAt: d.DiedAt,
		})
	}
	return out
}

func printDead(w io.Writer, dead []outbox.DeadLetter) {
	if len(dead) == 0 {
		fmt.Fprintln(w, "no dead letters match")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tKEY\tATTEMPTS\tDIED\tLAST ERROR")
	for _, d := range dead {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, truncate(d.Type, 30), truncate(d.Key, 30), d.Attempts,
			d.DiedAt.Format(time.RFC3339), truncate(d.LastError, 80))
	}
	_ = tw.Flush()
}
