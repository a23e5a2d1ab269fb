package pgbench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/transport/memory"
)

// Relay settings the drain scenario found fastest on a 2-core machine with PostgreSQL on the
// same host: batches large enough to amortise each claim's and ack's round trip, and enough
// cycles in flight to keep the server busy while the relay publishes.
const (
	DrainBatchSize   = 500
	DrainConcurrency = 4
)

// DrainOptions tunes Drain.
type DrainOptions struct {
	// Events in the backlog. Default 100000.
	Events int
	// BatchSize of the relay and of the held-transaction loop. Default DrainBatchSize.
	BatchSize int
	// Concurrency of the relay and of both raw loops. Default DrainConcurrency.
	Concurrency int
	// RawLimit is the LIMIT of the raw DELETE loop. Default 100.
	RawLimit int
	// Rounds is how many times each variant runs; results are medians. Default 3.
	Rounds int
	// SkipHeldTx skips the held-transaction loop.
	SkipHeldTx bool
	// Schema to work in. Default: a fresh random one, dropped afterwards.
	Schema string
}

// DrainResult compares draining a backlog through the relay with raw SQL on the same data.
type DrainResult struct {
	Events      int `json:"events"`
	Rounds      int `json:"rounds"`
	BatchSize   int `json:"batch_size"`
	Concurrency int `json:"concurrency"`
	// RelayPerSec: outbox.Relay with the lease store (claim UPDATE, ack DELETE) to memory.
	RelayPerSec float64 `json:"relay_events_per_sec"`
	// RawPerSec: DELETE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT RawLimit)
	// RETURNING * in a loop, publishing nothing.
	RawPerSec float64 `json:"raw_delete_events_per_sec"`
	RawLimit  int     `json:"raw_limit"`
	// Ratio is RelayPerSec / RawPerSec.
	Ratio float64 `json:"ratio"`
	// HeldTxPerSec: the other claim strategy, a transaction held open across the publish
	// (DELETE ... SKIP LOCKED RETURNING, publish to memory, COMMIT), to compare with the relay.
	HeldTxPerSec float64 `json:"held_tx_events_per_sec,omitempty"`
	HeldTxRatio  float64 `json:"held_tx_ratio,omitempty"`
	// The rate of every run, in run order.
	RelayRuns  []float64 `json:"relay_runs"`
	RawRuns    []float64 `json:"raw_runs"`
	HeldTxRuns []float64 `json:"held_tx_runs,omitempty"`
}

// Drain fills a backlog and drains it three ways on the same data: the relay, the raw loop and
// the held-transaction loop. Each run refills the table first; the variants take turns, Rounds
// times, and each reports its median, so load from other processes hits them alike.
func Drain(ctx context.Context, pool *pgxpool.Pool, o DrainOptions) (DrainResult, error) {
	if o.Events <= 0 {
		o.Events = 100000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DrainBatchSize
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DrainConcurrency
	}
	if o.RawLimit <= 0 {
		o.RawLimit = 100
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	sb, err := newSandbox(ctx, pool, o.Schema, nil)
	if err != nil {
		return DrainResult{}, err
	}
	defer sb.drop()
	r := DrainResult{Events: o.Events, BatchSize: o.BatchSize, Concurrency: o.Concurrency, RawLimit: o.RawLimit, Rounds: o.Rounds}

	variants := []struct {
		rates *[]float64
		run   func() (float64, error)
	}{
		{&r.RawRuns, func() (float64, error) { return sb.rawDrain(ctx, o.Concurrency, o.RawLimit, o.Events) }},
		{&r.RelayRuns, func() (float64, error) { return sb.relayDrain(ctx, o.BatchSize, o.Concurrency, o.Events, false) }},
	}
	if !o.SkipHeldTx {
		variants = append(variants, struct {
			rates *[]float64
			run   func() (float64, error)
		}{&r.HeldTxRuns, func() (float64, error) { return sb.heldTxDrain(ctx, o.BatchSize, o.Concurrency, o.Events) }})
	}
	for range o.Rounds {
		for _, v := range variants {
			if err := sb.fill(ctx, o.Events); err != nil {
				return r, err
			}
			rate, err := v.run()
			if err != nil {
				return r, err
			}
			*v.rates = append(*v.rates, rate)
		}
	}
	r.RawPerSec, r.RelayPerSec, r.HeldTxPerSec = benchutil.Median(r.RawRuns), benchutil.Median(r.RelayRuns), benchutil.Median(r.HeldTxRuns)
	r.Ratio = ratio(r.RelayPerSec, r.RawPerSec)
	r.HeldTxRatio = ratio(r.HeldTxPerSec, r.RawPerSec)
	return r, nil
}

func (sb *sandbox) relayDrain(ctx context.Context, batch, concurrency, events int, ordered bool) (float64, error) {
	transport := memory.New()
	relay, err := outbox.NewRelay(sb.store, transport, outbox.Config{BatchSize: batch, Concurrency: concurrency, Unordered: !ordered})
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
		return 0, fmt.Errorf("pgbench: relay drain: %w", err)
	}
	return float64(events) / elapsed.Seconds(), nil
}

// loop runs step from concurrency goroutines until every one reports an empty batch, and
// returns events per second.
func loop(ctx context.Context, concurrency, events int, step func(ctx context.Context) (int, error)) (float64, error) {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	var mu sync.Mutex
	total := 0
	for range concurrency {
		wg.Go(func() {
			for {
				n, err := step(ctx)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	if total != events {
		return 0, fmt.Errorf("pgbench: drained %d events, want %d", total, events)
	}
	return float64(events) / elapsed.Seconds(), nil
}

func (sb *sandbox) rawDrain(ctx context.Context, concurrency, limit, events int) (float64, error) {
	t := sb.store.Table()
	query := fmt.Sprintf(`DELETE FROM %[1]s WHERE id IN (SELECT id FROM %[1]s WHERE status = 'pending' ORDER BY seq LIMIT %[2]d FOR UPDATE SKIP LOCKED) RETURNING *`, t, limit)
	rate, err := loop(ctx, concurrency, events, func(ctx context.Context) (int, error) {
		rows, err := sb.pool.Query(ctx, query)
		if err != nil {
			return 0, err
		}
		n := 0
		for rows.Next() {
			if _, err := rows.Values(); err != nil {
				rows.Close()
				return 0, err
			}
			n++
		}
		return n, rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("pgbench: raw drain: %w", err)
	}
	return rate, nil
}

func (sb *sandbox) heldTxDrain(ctx context.Context, batch, concurrency, events int) (float64, error) {
	t := sb.store.Table()
	query := fmt.Sprintf(`DELETE FROM %[1]s WHERE id IN (
	SELECT id FROM %[1]s WHERE status = 'pending' AND available_at <= now() ORDER BY seq LIMIT %[2]d FOR UPDATE SKIP LOCKED)
RETURNING id::text, type, key, payload::text, created_at`, t, batch)
	transport := memory.New()
	rate, err := loop(ctx, concurrency, events, func(ctx context.Context) (int, error) {
		n := 0
		err := pgx.BeginFunc(ctx, sb.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, query)
			if err != nil {
				return err
			}
			var msgs []*outbox.Message
			for rows.Next() {
				var m outbox.Message
				var payload string
				if err := rows.Scan(&m.ID, &m.Type, &m.Key, &payload, &m.CreatedAt); err != nil {
					rows.Close()
					return err
				}
				m.Payload = json.RawMessage(payload)
				msgs = append(msgs, &m)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			n = len(msgs)
			if n == 0 {
				return nil
			}
			return transport.Publish(ctx, msgs) // commit = ack; an error rolls back = release
		})
		return n, err
	})
	if err != nil {
		return 0, fmt.Errorf("pgbench: held-transaction drain: %w", err)
	}
	return rate, nil
}
