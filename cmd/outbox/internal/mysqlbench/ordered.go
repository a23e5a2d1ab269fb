package mysqlbench

import (
	"context"

	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
)

// Backlog is one shape of ordered-mode backlog: Keys keys with PerKey events each, their writes
// interleaved.
type Backlog struct {
	Keys   int `json:"keys"`
	PerKey int `json:"per_key"`
}

// DefaultBacklogs are pgbench's: many keys, a few busy keys, one hot key (the backlog a broker
// outage leaves behind).
var DefaultBacklogs = []Backlog{{Keys: 1000, PerKey: 100}, {Keys: 10, PerKey: 10000}, {Keys: 1, PerKey: 10000}}

// OrderedOptions tunes Ordered.
type OrderedOptions struct {
	// Backlogs to drain. Default DefaultBacklogs.
	Backlogs []Backlog
	// BatchSize and Concurrency of both relays. Defaults DrainBatchSize and DrainConcurrency.
	BatchSize, Concurrency int
	// Rounds of each variant; results are medians. Default 3.
	Rounds int
	// Table to work in. Default: a fresh random one, dropped afterwards.
	Table string
}

// OrderedResult compares, for each backlog, an ordered relay with an unordered one draining the
// same data to the memory transport in the same run.
type OrderedResult struct {
	BatchSize   int           `json:"batch_size"`
	Concurrency int           `json:"concurrency"`
	Rounds      int           `json:"rounds"`
	Backlogs    []OrderedRuns `json:"backlogs"`
	Server      string        `json:"server"`
}

// OrderedRuns is one backlog's result.
type OrderedRuns struct {
	Backlog
	UnorderedPerSec float64   `json:"unordered_events_per_sec"`
	OrderedPerSec   float64   `json:"ordered_events_per_sec"`
	Ratio           float64   `json:"ratio"` // OrderedPerSec / UnorderedPerSec
	UnorderedRuns   []float64 `json:"unordered_runs"`
	OrderedRuns     []float64 `json:"ordered_runs"`
}

// Ordered drains each backlog with an unordered and an ordered relay, taking turns Rounds
// times, refilling the table before every run.
func Ordered(ctx context.Context, url string, o OrderedOptions) (OrderedResult, error) {
	if len(o.Backlogs) == 0 {
		o.Backlogs = DefaultBacklogs
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DrainBatchSize
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DrainConcurrency
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	sb, err := newSandbox(ctx, url, o.Table, o.Concurrency+2)
	if err != nil {
		return OrderedResult{}, err
	}
	defer sb.drop()
	r := OrderedResult{BatchSize: o.BatchSize, Concurrency: o.Concurrency, Rounds: o.Rounds, Server: sb.store.ServerVersion()}
	for _, bl := range o.Backlogs {
		runs := OrderedRuns{Backlog: bl}
		events := bl.Keys * bl.PerKey
		for range o.Rounds {
			for _, ordered := range []bool{false, true} {
				if err := sb.fill(ctx, events, bl.Keys); err != nil {
					return r, err
				}
				rate, err := sb.relayDrain(ctx, o.BatchSize, o.Concurrency, events, ordered)
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
		runs.Ratio = ratio(runs.OrderedPerSec, runs.UnorderedPerSec)
		r.Backlogs = append(r.Backlogs, runs)
	}
	return r, nil
}
