// Package corebench measures the relay engine itself, with no database or broker in the way:
// outbox.Relay draining an in-memory store (memstore.Store) to the memory transport,
// against a raw claim-publish-ack loop over the same store and transport in the same run. The
// ratio says how much the relay's scheduling costs; the engine must never be the bottleneck.
package corebench

import (
	"context"
	"errors"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/transport/memory"
)

// Options tunes Run. The zero value of every field means its documented default.
type Options struct {
	// Events drained by each measurement. Default 100000.
	Events int
	// BatchSize of the relay's claims and of the raw loop's. Default 100.
	BatchSize int
	// Concurrency of the relay. Default 2, the relay's default; the raw loop runs one cycle at
	// a time, as a hand-written loop would.
	Concurrency int
	// Rounds alternate raw and relay measurements; results are medians. Default 3.
	Rounds int
}

// Result compares the relay with the raw loop.
type Result struct {
	Events      int `json:"events"`
	BatchSize   int `json:"batch_size"`
	Concurrency int `json:"concurrency"`
	Rounds      int `json:"rounds"`
	// RelayPerSec is the relay with its default settings (ordered per key).
	RelayPerSec float64   `json:"relay_events_per_sec"`
	RawPerSec   float64   `json:"raw_events_per_sec"`
	Ratio       float64   `json:"ratio"` // RelayPerSec / RawPerSec
	RelayRuns   []float64 `json:"relay_runs"`
	RawRuns     []float64 `json:"raw_runs"`
	// UnorderedPerSec is the relay with Unordered set, in the same rounds.
	UnorderedPerSec float64   `json:"unordered_events_per_sec"`
	UnorderedRatio  float64   `json:"unordered_ratio"` // UnorderedPerSec / RawPerSec
	UnorderedRuns   []float64 `json:"unordered_runs"`
}

// Run measures both, alternating, so that load from other processes hits them alike.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Events < 0 || o.BatchSize < 0 || o.Concurrency < 0 || o.Rounds < 0 {
		return Result{}, errors.New("corebench: options must not be negative")
	}
	o = o.withDefaults()
	r := Result{Events: o.Events, BatchSize: o.BatchSize, Concurrency: o.Concurrency, Rounds: o.Rounds}
	for range o.Rounds {
		raw, err := rawLoop(ctx, o)
		if err != nil {
			return r, err
		}
		relayed, err := relay(ctx, o, false)
		if err != nil {
			return r, err
		}
		unordered, err := relay(ctx, o, true)
		if err != nil {
			return r, err
		}
		r.RawRuns, r.RelayRuns = append(r.RawRuns, raw), append(r.RelayRuns, relayed)
		r.UnorderedRuns = append(r.UnorderedRuns, unordered)
	}
	r.RawPerSec, r.RelayPerSec = benchutil.Median(r.RawRuns), benchutil.Median(r.RelayRuns)
	r.UnorderedPerSec = benchutil.Median(r.UnorderedRuns)
	if r.RawPerSec > 0 {
		r.Ratio = r.RelayPerSec / r.RawPerSec
		r.UnorderedRatio = r.UnorderedPerSec / r.RawPerSec
	}
	return r, nil
}

func (o Options) withDefaults() Options {
	if o.Events == 0 {
		o.Events = 100000
	}
	if o.BatchSize == 0 {
		o.BatchSize = 100
	}
	if o.Concurrency == 0 {
		o.Concurrency = 2
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	return o
}

func relay(ctx context.Context, o Options, unordered bool) (float64, error) {
	st, err := benchutil.Backlog(ctx, o.Events, "BENCH_EVENT")
	if err != nil {
		return 0, err
	}
	tr := memory.New()
	// An hour's poll interval: only the relay's own "batch was full, claim again" loop and the
	// store's notifications drive it, as under load.
	r, err := outbox.NewRelay(st, tr, outbox.Config{BatchSize: o.BatchSize, Concurrency: o.Concurrency, PollInterval: time.Hour, Unordered: unordered})
	if err != nil {
		return 0, err
	}
	began := time.Now()
	if err := r.Start(ctx); err != nil {
		return 0, err
	}
	waitErr := tr.WaitFor(ctx, o.Events)
	elapsed := time.Since(began)
	if err := errors.Join(waitErr, r.Stop(context.WithoutCancel(ctx))); err != nil {
		return 0, err
	}
	return float64(o.Events) / elapsed.Seconds(), nil
}

func rawLoop(ctx context.Context, o Options) (float64, error) {
	st, err := benchutil.Backlog(ctx, o.Events, "BENCH_EVENT")
	if err != nil {
		return 0, err
	}
	tr := memory.New()
	req := outbox.ClaimRequest{Token: "raw", Limit: o.BatchSize, Lease: time.Minute}
	began := time.Now()
	for done := 0; done < o.Events; {
		msgs, err := st.Claim(ctx, req)
		if err != nil {
			return 0, err
		}
		if len(msgs) == 0 {
			return 0, errors.New("corebench: raw loop found the store empty early")
		}
		if err := tr.Publish(ctx, msgs); err != nil {
			return 0, err
		}
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		if _, err := st.Ack(ctx, req.Token, ids); err != nil {
			return 0, err
		}
		done += len(msgs)
	}
	return float64(o.Events) / time.Since(began).Seconds(), nil
}
