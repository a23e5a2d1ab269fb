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

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/store/postgres"
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
//
// Execute* are the same writes through postgres.Execute, which begins and commits the
// transaction itself: in WAL mode it sends the event with the COMMIT in one round trip.
//
// Two more variants locate the WAL mode's cost: the transaction plus a statement that does
// nothing (SELECT 1: the price of a statement's round trip, the floor of any outbox written as
// its own statement) and plus a bare pg_logical_emit_message of the same bytes (the floor of
// the WAL mode, without the store's encoding and its check that the slot exists).
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
	// Through postgres.Execute.
	TableExecuteTPS   float64 `json:"table_execute_tx_per_sec"`
	TableExecuteRatio float64 `json:"table_execute_ratio"`
	WALExecuteTPS     float64 `json:"wal_execute_tx_per_sec"`
	WALExecuteRatio   float64 `json:"wal_execute_ratio"`
	// RoundTripTPS: plus SELECT 1; RawEmitTPS: plus a bare pg_logical_emit_message.
	RoundTripTPS   float64 `json:"round_trip_tx_per_sec"`
	RoundTripRatio float64 `json:"round_trip_ratio"`
	RawEmitTPS     float64 `json:"raw_emit_tx_per_sec"`
	RawEmitRatio   float64 `json:"raw_emit_ratio"`
	// The rate of every slice, in run order.
	BaselineRuns  []float64 `json:"baseline_runs"`
	TableRuns     []float64 `json:"table_runs"`
	WALRuns       []float64 `json:"wal_runs"`
	RoundTripRuns []float64 `json:"round_trip_runs"`
	RawEmitRuns   []float64 `json:"raw_emit_runs"`
	TableExecRuns []float64 `json:"table_execute_runs"`
	WALExecRuns   []float64 `json:"wal_execute_runs"`
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
			return sb.store.Add(ctx, tx, &outbox.Message{Type: "ORDER_CREATED", Key: key, Payload: samplePayload})
		}
	}
	roundTrip := func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, insert, "c-42", "129.90"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT 1")
		return err
	}
	// What the store emits for one event is about this long: the encoded message.
	content := make([]byte, 64+len(samplePayload))
	rawEmit := func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, insert, "c-42", "129.90"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, 'outbox-walbench-raw', $1::bytea)", content)
		return err
	}
	inTx := func(fn func(context.Context, pgx.Tx) error) func(context.Context) error {
		return func(ctx context.Context) error {
			return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return fn(ctx, tx) })
		}
	}
	execute := func(sb *sandbox) func(context.Context) error {
		return func(ctx context.Context) error {
			key := "order-" + strconv.FormatInt(nextKey.Add(1), 10)
			_, err := postgres.Execute(ctx, sb.store, func(ctx context.Context, tx pgx.Tx) (struct{}, error) {
				_, err := tx.Exec(ctx, insert, "c-42", "129.90")
				return struct{}{}, err
			}, &outbox.Message{Type: "ORDER_CREATED", Key: key, Payload: samplePayload})
			return err
		}
	}
	r := WriteResult{Clients: o.Clients, Rounds: o.Rounds, Seconds: o.Duration.Seconds()}
	variants := []struct {
		fn   func(context.Context) error
		runs *[]float64
	}{
		{inTx(baseline), &r.BaselineRuns}, {inTx(with(table)), &r.TableRuns}, {inTx(with(wal)), &r.WALRuns},
		{execute(table), &r.TableExecRuns}, {execute(wal), &r.WALExecRuns},
		{inTx(roundTrip), &r.RoundTripRuns}, {inTx(rawEmit), &r.RawEmitRuns},
	}
	for _, v := range variants { // warm up connections and prepared statements
		if _, err := runTx(ctx, o.Clients, 300*time.Millisecond, v.fn); err != nil {
			return WriteResult{}, err
		}
	}
	for range o.Rounds {
		for _, v := range variants {
			n, err := runTx(ctx, o.Clients, o.Duration, v.fn)
			if err != nil {
				return WriteResult{}, err
			}
			*v.runs = append(*v.runs, float64(n)/o.Duration.Seconds())
		}
	}
	r.BaselineTPS, r.TableTPS, r.WALTPS = benchutil.Median(r.BaselineRuns), benchutil.Median(r.TableRuns), benchutil.Median(r.WALRuns)
	r.TableRatio, r.WALRatio = ratio(r.BaselineTPS, r.TableTPS), ratio(r.BaselineTPS, r.WALTPS)
	r.TableExecuteTPS, r.WALExecuteTPS = benchutil.Median(r.TableExecRuns), benchutil.Median(r.WALExecRuns)
	r.TableExecuteRatio, r.WALExecuteRatio = ratio(r.BaselineTPS, r.TableExecuteTPS), ratio(r.BaselineTPS, r.WALExecuteTPS)
	r.RoundTripTPS, r.RawEmitTPS = benchutil.Median(r.RoundTripRuns), benchutil.Median(r.RawEmitRuns)
	r.RoundTripRatio, r.RawEmitRatio = ratio(r.BaselineTPS, r.RoundTripTPS), ratio(r.BaselineTPS, r.RawEmitTPS)
	return r, nil
}

// runTx runs fn (one transaction) from clients goroutines for d and returns how many committed.
func runTx(ctx context.Context, clients int, d time.Duration, fn func(context.Context) error) (int64, error) {
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := fn(ctx); err != nil {
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
