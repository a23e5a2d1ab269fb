package walbench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/core"
)

// WriteOptions tunes Write.
type WriteOptions struct {
	// Clients run transactions concurrently. Default 8.
	Clients int
	// Duration of each measured slice. Default 1s.
	Duration time.Duration
	// Rounds alternate the three variants this many times, so load from other processes hits
	// them alike; each reports its median slice. Default 10.
	Rounds int
}

// WriteResult compares a one-row business transaction alone (the baseline) with the same
// transaction plus Add of one event in table mode (an INSERT into the outbox table) and in WAL
// mode (a pg_logical_emit_message). The ratios are mean transaction times over the baseline's
// (1.10 = 10% slower). Nothing reads the slot meanwhile, as the table mode's table is not
// drained: each measures what the write costs the writer.
type WriteResult struct {
	Clients     int     `json:"clients"`
	Rounds      int     `json:"rounds"`
	Seconds     float64 `json:"seconds_per_slice"`
	BaselineTPS float64 `json:"baseline_tx_per_sec"`
	TableTPS    float64 `json:"table_tx_per_sec"`
	WALTPS      float64 `json:"wal_tx_per_sec"`
	// TableRatio and WALRatio are BaselineTPS over TableTPS and WALTPS.
	TableRatio float64 `json:"table_ratio"`
	WALRatio   float64 `json:"wal_ratio"`
	// The rate of every slice, in run order.
	BaselineRuns []float64 `json:"baseline_runs"`
	TableRuns    []float64 `json:"table_runs"`
	WALRuns      []float64 `json:"wal_runs"`
}

// Write measures what the outbox write adds to a business transaction in each mode.
func Write(ctx context.Context, pool *pgxpool.Pool, o WriteOptions) (WriteResult, error) {
	if o.Clients <= 0 {
		o.Clients = 8
	}
	if o.Duration <= 0 {
		o.Duration = time.Second
	}
	if o.Rounds <= 0 {
		o.Rounds = 10
	}
	if err := NeedLogical(ctx, pool); err != nil {
		return WriteResult{}, err
	}
	table, err := newSandbox(ctx, pool, false)
	if err != nil {
		return WriteResult{}, err
	}
	defer table.drop()
	wal, err := newSandbox(ctx, pool, true)
	if err != nil {
		return WriteResult{}, err
	}
	defer wal.drop()
	// One business table for the three variants, so they differ only by the outbox write.
	business := pgx.Identifier{table.schema, "orders"}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+business+" (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer text NOT NULL, total numeric NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return WriteResult{}, fmt.Errorf("walbench: create business table: %w", err)
	}
	insert := "INSERT INTO " + business + " (customer, total) VALUES ($1, $2)"
	// A table-mode relay would be listening: NOTIFY costs more with a listener than without.
	listenCtx, stopListening := context.WithCancel(ctx)
	defer stopListening()
	signals, err := table.store.Listen(listenCtx)
	if err != nil {
		return WriteResult{}, err
	}
	go func() {
		for range signals {
		}
	}()

	baseline := func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, insert, "c-42", "129.90")
		return err
	}
	var nextKey atomic.Int64
	with := func(sb *sandbox) func(context.Context, pgx.Tx) error {
		return func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, insert, "c-42", "129.90"); err != nil {
				return err
			}
			key := "order-" + strconv.FormatInt(nextKey.Add(1), 10)
			return sb.store.Add(ctx, tx, &core.Message{Type: "ORDER_CREATED", Key: key, Payload: samplePayload})
		}
	}
	variants := []struct {
		fn   func(context.Context, pgx.Tx) error
		runs *[]float64
	}{{baseline, nil}, {with(table), nil}, {with(wal), nil}}
	r := WriteResult{Clients: o.Clients, Rounds: o.Rounds, Seconds: o.Duration.Seconds()}
	variants[0].runs, variants[1].runs, variants[2].runs = &r.BaselineRuns, &r.TableRuns, &r.WALRuns
	for _, v := range variants { // warm up connections and prepared statements
		if _, err := runTx(ctx, pool, o.Clients, 300*time.Millisecond, v.fn); err != nil {
			return WriteResult{}, err
		}
	}
	for range o.Rounds {
		for _, v := range variants {
			n, err := runTx(ctx, pool, o.Clients, o.Duration, v.fn)
			if err != nil {
				return WriteResult{}, err
			}
			*v.runs = append(*v.runs, float64(n)/o.Duration.Seconds())
		}
	}
	r.BaselineTPS, r.TableTPS, r.WALTPS = benchutil.Median(r.BaselineRuns), benchutil.Median(r.TableRuns), benchutil.Median(r.WALRuns)
	r.TableRatio, r.WALRatio = ratio(r.BaselineTPS, r.TableTPS), ratio(r.BaselineTPS, r.WALTPS)
	return r, nil
}

// runTx runs fn in transactions from clients goroutines for d and returns how many committed.
func runTx(ctx context.Context, pool *pgxpool.Pool, clients int, d time.Duration, fn func(context.Context, pgx.Tx) error) (int64, error) {
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return fn(ctx, tx) }); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("walbench: write: %w", err) })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return done.Load(), firstErr
}
