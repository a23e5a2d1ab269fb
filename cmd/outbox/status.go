package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/server"
)

const statusUsage = `Usage: outbox status --store URL [--relay http://HOST:PORT] [--json]

Reports how many messages are pending, delivered (when the relay keeps them) and dead, the age of
the oldest pending message, and the stalled keys: keys with a dead message, which an ordered
relay holds back until the message is requeued or purged (outbox dead).

The store cannot know whether a relay's broker is reachable: --relay asks a running relay (the
address of its --listen) for its /healthz, and shows whether it runs, whether its store answers
and since when its transport is unavailable, if it is.

In PostgreSQL's WAL mode (--postgres-mode wal) it also shows the replication slot: whether it
exists and a relay reads it, its lag (WAL written since its confirmed position) and the WAL it
makes the server keep, its wal_status, and an alarm when it lags past --wal-lag-alarm, lost its
WAL or is missing. Pending then counts the messages in the table (those whose publish failed);
the ones still in the WAL show as the slot's lag.`

// stalledScan bounds how many dead letters status reads to find stalled keys.
const stalledScan = 10000

// statusReport is the JSON of outbox status.
type statusReport struct {
	Store         string       `json:"store"`
	Pending       int64        `json:"pending"`
	Delivered     int64        `json:"delivered"`
	Dead          int64        `json:"dead"`
	OldestPending *time.Time   `json:"oldest_pending"` // null when nothing is pending
	OldestAgeSec  float64      `json:"oldest_pending_age_seconds"`
	StalledKeys   []stalledKey `json:"stalled_keys"`
	// StalledPartial is true when there were more dead letters than status reads.
	StalledPartial bool `json:"stalled_keys_partial,omitempty"`
	// Relay is the health of the relay --relay names; absent without --relay.
	Relay *relayHealth `json:"relay,omitempty"`
	// Slot is the replication slot of PostgreSQL's WAL mode; absent in every other case.
	Slot *slotReport `json:"slot,omitempty"`
}

// relayHealth is what a relay's /healthz answered, or why it did not.
type relayHealth struct {
	URL string `json:"url"`
	// Reachable is false when the relay did not answer; Error says why.
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	server.Health
}

type stalledKey struct {
	Key       string    `json:"key"`
	Dead      int       `json:"dead"`
	HeadID    string    `json:"head_id"`
	LastError string    `json:"last_error"`
	DiedAt    time.Time `json:"died_at"`
}

func runStatus(ctx context.Context, e *env, args []string) error {
	const cmd = "outbox status"
	f := newFlags(cmd, statusUsage)
	sf := addStoreFlags(f)
	asJSON := f.fs.Bool("json", false, "print JSON instead of a table")
	timeout := f.fs.Duration("timeout", 30*time.Second, "bound on the whole command")
	relayURL := f.fs.String("relay", "", "also ask the relay serving /healthz at this address (http://HOST:PORT, its --listen) for its health")
	if err := f.parse(e, args, false); err != nil {
		return err
	}
	healthURL, err := relayHealthURL(cmd, *relayURL)
	if err != nil {
		return err
	}
	ctx, store, done, err := sf.open(ctx, cmd, *timeout)
	if err != nil {
		return err
	}
	defer done()
	if err := store.checkSchema(ctx); err != nil {
		return failed(cmd, err)
	}
	report, err := status(ctx, store)
	if err != nil {
		return failed(cmd, err)
	}
	report.Store = store.name
	if store.wal != nil {
		st, err := store.wal.SlotStatus(ctx)
		if err != nil {
			return failed(cmd, err)
		}
		report.Slot = newSlotReport(st)
	}
	if healthURL != "" {
		report.Relay = askRelay(ctx, *relayURL, healthURL)
	}
	if *asJSON {
		return writeJSON(e.stdout, report)
	}
	printStatus(e.stdout, report, time.Now())
	return nil
}

func status(ctx context.Context, ins outbox.Inspector) (statusReport, error) {
	counts, err := ins.Counts(ctx)
	if err != nil {
		return statusReport{}, err
	}
	r := statusReport{Pending: counts.Pending, Delivered: counts.Delivered, Dead: counts.Dead, StalledKeys: []stalledKey{}}
	if !counts.OldestPending.IsZero() {
		oldest := counts.OldestPending
		r.OldestPending = &oldest
		r.OldestAgeSec = max(0, time.Since(oldest).Seconds())
	}
	if counts.Dead == 0 {
		return r, nil
	}
	dead, err := ins.ListDead(ctx, outbox.DeadFilter{Limit: stalledScan})
	if err != nil {
		return r, err
	}
	r.StalledPartial = len(dead) == stalledScan
	// Dead letters come oldest first, so a key's first one is the one blocking it, and the keys
	// keep the order in which they stalled.
	index := map[string]int{}
	for _, d := range dead {
		if d.Key == "" {
			continue // unkeyed messages block nothing
		}
		if i, ok := index[d.Key]; ok {
			r.StalledKeys[i].Dead++
			continue
		}
		index[d.Key] = len(r.StalledKeys)
		r.StalledKeys = append(r.StalledKeys, stalledKey{Key: d.Key, Dead: 1, HeadID: d.ID, LastError: d.LastError, DiedAt: d.DiedAt})
	}
	return r, nil
}

func printStatus(w io.Writer, r statusReport, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "store\t%s\n", r.Store)
	fmt.Fprintf(tw, "pending\t%d\n", r.Pending)
	fmt.Fprintf(tw, "delivered\t%d\n", r.Delivered)
	fmt.Fprintf(tw, "dead\t%d\n", r.Dead)
	if r.OldestPending != nil {
		fmt.Fprintf(tw, "oldest pending\t%s (%s ago)\n", r.OldestPending.Format(time.RFC3339), now.Sub(*r.OldestPending).Round(time.Second))
	} else {
		fmt.Fprintf(tw, "oldest pending\t-\n")
	}
	if r.Slot != nil {
		printSlot(tw, r.Slot)
	}
	if r.Relay != nil {
		fmt.Fprintf(tw, "relay\t%s: %s\n", r.Relay.URL, r.Relay.text(now))
	}
	if len(r.StalledKeys) == 0 {
		fmt.Fprintf(tw, "stalled keys\tnone\n")
	}
	_ = tw.Flush()
	if len(r.StalledKeys) == 0 {
		return
	}
	partial := ""
	if r.StalledPartial {
		partial = fmt.Sprintf(", from the oldest %d dead letters", stalledScan)
	}
	fmt.Fprintf(w, "\nstalled keys (%d%s; ordered relays wait on them until requeued or purged):\n", len(r.StalledKeys), partial)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tDEAD\tHEAD ID\tDIED\tLAST ERROR")
	for _, k := range r.StalledKeys {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", k.Key, k.Dead, k.HeadID, k.DiedAt.Format(time.RFC3339), truncate(k.LastError, 60))
	}
	_ = tw.Flush()
}

// printSlot writes the slot's rows of the status table.
func printSlot(tw io.Writer, s *slotReport) {
	state := "missing"
	switch {
	case s.Exists && s.Active:
		state = fmt.Sprintf("exists, read by server process %d", s.ActivePID)
	case s.Exists:
		state = "exists, read by no relay"
	}
	fmt.Fprintf(tw, "slot\t%s (%s)\n", s.Name, state)
	if s.Exists {
		fmt.Fprintf(tw, "slot lag\t%s of WAL since %s\n", bytesText(s.LagBytes), s.ConfirmedLSN)
		fmt.Fprintf(tw, "retained WAL\t%s (wal_status %s)\n", bytesText(s.RetainedBytes), s.WALStatus)
	}
	if s.Alarm {
		fmt.Fprintf(tw, "slot alarm\tALARM: %s\n", s.AlarmReason)
	} else {
		fmt.Fprintf(tw, "slot alarm\tnone\n")
	}
}

// relayHealthURL checks --relay and returns the URL of its /healthz ("" without --relay).
func relayHealthURL(cmd, raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "", usagef(cmd, "--relay: not http://HOST:PORT (the relay's --listen address)")
	case u.User != nil:
		return "", usagef(cmd, "--relay: must not carry user information")
	}
	if !strings.HasSuffix(u.Path, "/healthz") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/healthz"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// askRelay reads the relay's /healthz as JSON, bounded by ctx and 5 seconds.
func askRelay(ctx context.Context, shown, healthURL string) *relayHealth {
	h := &relayHealth{URL: shown}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthURL, nil)
	if err != nil {
		h.Error = err.Error()
		return h
	}
	req.Header.Set("Accept", "application/json")
	// No keep-alive: the command asks once and exits.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is shown beside it already
		}
		h.Error = err.Error()
		return h
	}
	defer func() { _ = resp.Body.Close() }() // read to its end or abandoned: nothing to report
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h.Health); err != nil ||
		(resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable) {
		h.Health = server.Health{}
		h.Error = fmt.Sprintf("answered %s, not an outbox relay's health", resp.Status)
		return h
	}
	h.Reachable = true
	return h
}

// text is the relay's health in one line.
func (h *relayHealth) text(now time.Time) string {
	if !h.Reachable {
		return "unreachable: " + oneLine(h.Error)
	}
	return h.Health.Text(now)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// truncate shortens s to n runes for a table cell, on one line.
func truncate(s string, n int) string {
	s = oneLine(s)
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
