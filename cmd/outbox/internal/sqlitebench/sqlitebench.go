// Package sqlitebench measures ordered against unordered draining on the SQLite store, for
// outbox bench: the same backlogs as the PostgreSQL benchmark, in a temporary database file.
package sqlitebench

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/store/sqlite"
	"github.com/txoutbox/outbox/transport/memory"
)

// Backlog is Keys keys with PerKey events each, their writes interleaved.
type Backlog struct {
	Keys   int `json:"keys"`
	PerKey int `json:"per_key"`
}

// DefaultBacklogs match the PostgreSQL benchmark's: many keys, a few busy keys, one hot key.
var DefaultBacklogs = []Backlog{{Keys: 1000, PerKey: 100}, {Keys: 10, PerKey: 10000}, {Keys: 1, PerKey: 10000}}

// Options tunes Ordered.
type Options struct {
	Backlogs  []Backlog // default DefaultBacklogs
	BatchSize int       // of both relays; default 500
	Rounds    int       // of each variant; results are medians; default 3
	Dir       string    // for the database file; default a temporary directory, removed after
}

// Result compares, per backlog, an ordered relay with an unordered one over the same data.
type Result struct {
	BatchSize int    `json:"batch_size"`
	Rounds    int    `json:"rounds"`
	Backlogs  []Runs `json:"backlogs"`
}

// Runs is one backlog's result.
type Runs struct {
	Backlog
	UnorderedPerSec float64   `json:"unordered_events_per_sec"`
	OrderedPerSec   float64   `json:"ordered_events_per_sec"`
	Ratio           float64   `json:"ratio"` // OrderedPerSec / UnorderedPerSec
	UnorderedRuns   []float64 `json:"unordered_runs"`
	OrderedRuns     []float64 `json:"ordered_runs"`
}

var payload = []byte(`{"order_id":1234567,"customer":"c-42","amount":"129.90","currency":"EUR","items":3}`)

// Ordered drains each backlog with an unordered and an ordered relay (one worker: SQLite has one
// writer), taking turns Rounds times on a fresh database each run.
func Ordered(ctx context.Context, o Options) (Result, error) {
	if len(o.Backlogs) == 0 {
		o.Backlogs = DefaultBacklogs
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "outbox-sqlitebench-")
		if err != nil {
			return Result{}, err
		}
		defer func() { _ = os.RemoveAll(d) }() // a scratch directory
		dir = d
	}
	r := Result{BatchSize: o.BatchSize, Rounds: o.Rounds}
	run := 0
	for _, bl := range o.Backlogs {
		runs := Runs{Backlog: bl}
		for range o.Rounds {
			for _, ordered := range []bool{false, true} {
				run++
				rate, err := drain(ctx, filepath.Join(dir, fmt.Sprintf("run-%d.db", run)), bl, o.BatchSize, ordered)
				if err != nil {
					return r, err
				}
				if ordered {
					runs.OrderedRuns = append(runs.OrderedRuns, rate)
				} else {
					runs.UnorderedRuns = append(runs.UnorderedRuns, rate)
				}
			}
		}
		runs.UnorderedPerSec, runs.OrderedPerSec = benchutil.Median(runs.UnorderedRuns), benchutil.Median(runs.OrderedRuns)
		if runs.UnorderedPerSec > 0 {
			runs.Ratio = runs.OrderedPerSec / runs.UnorderedPerSec
		}
		r.Backlogs = append(r.Backlogs, runs)
	}
	return r, nil
}

func drain(ctx context.Context, path string, bl Backlog, batch int, ordered bool) (float64, error) {
	store, err := sqlite.New(ctx, sqlite.Config{Path: path})
	if err != nil {
		return 0, err
	}
	defer func() { _ = store.Close() }()
	defer func() { _ = os.Remove(path) }()
	if err := store.EnsureSchema(ctx); err != nil {
		return 0, err
	}
	events := bl.Keys * bl.PerKey
	const per = 1000
	for done := 0; done < events; done += per {
		msgs := make([]*outbox.Message, 0, per)
		for i := done; i < events && i < done+per; i++ {
			msgs = append(msgs, &outbox.Message{Type: "ORDER_CREATED", Key: fmt.Sprintf("order-%d", i%bl.Keys), Payload: payload})
		}
		if _, err := sqlite.Execute(ctx, store, func(context.Context, *sql.Tx) (any, error) { return nil, nil }, msgs...); err != nil {
			return 0, fmt.Errorf("sqlitebench: fill: %w", err)
		}
	}
	transport := memory.New()
	relay, err := outbox.NewRelay(store, transport, outbox.Config{BatchSize: batch, Concurrency: 1, Unordered: !ordered})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := relay.Start(ctx); err != nil {
		return 0, err
	}
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	err = transport.WaitFor(waitCtx, events)
	cancel()
	elapsed := time.Since(start)
	if stopErr := relay.Stop(context.Background()); err == nil {
		err = stopErr
	}
	if err != nil {
		return 0, fmt.Errorf("sqlitebench: drain: %w", err)
	}
	return float64(events) / elapsed.Seconds(), nil
}
