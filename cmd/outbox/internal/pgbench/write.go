package pgbench

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

// WriteOptions tunes WriteOverhead.
type WriteOptions struct {
	// Clients run transactions concurrently. Default 8.
	Clients int
	// Duration of each measured slice. Default 1s.
	Duration time.Duration
	// Rounds alternate baseline and outbox slices this many times, so load from other processes
	// hits both alike; each reports its median slice. Default 10.
	Rounds int
	// NotifyInterval of the store (see postgres.Config). Default the store's default.
	NotifyInterval time.Duration
	// Schema to work in. Default: a fresh random one, dropped afterwards.
	Schema string
}

// WriteResult compares a one-row business transaction with the same transaction plus Add of one
// event. Ratio is the outbox transaction's mean duration over the baseline's (1.25 = 25% slower).
//
// The event is written three ways: with a Key of its own per transaction (OutboxTPS, the common
// case: each aggregate its key), without a Key (Unkeyed), and with the same Key in every
// transaction (HotKey): writers of one key take turns until commit, so that one measures what
// ordering by commit costs when every client writes the same key.
type WriteResult struct {
	Clients      int     `json:"clients"`
	Rounds       int     `json:"rounds"`
	Seconds      float64 `json:"seconds_per_slice"`
	BaselineTPS  float64 `json:"baseline_tx_per_sec"`
	OutboxTPS    float64 `json:"outbox_tx_per_sec"`
	Ratio        float64 `json:"ratio"`
	UnkeyedTPS   float64 `json:"unkeyed_tx_per_sec"`
	UnkeyedRatio float64 `json:"unkeyed_ratio"`
	HotKeyTPS    float64 `json:"hot_key_tx_per_sec"`
	HotKeyRatio  float64 `json:"hot_key_ratio"`
	// The rate of every slice, in run order.
	BaselineRuns []float64 `json:"baseline_runs"`
	OutboxRuns   []float64 `json:"outbox_runs"`
	UnkeyedRuns  []float64 `json:"unkeyed_runs"`
	HotKeyRuns   []float64 `json:"hot_key_runs"`
}

// WriteOverhead measures what the outbox write adds to a business transaction.
func WriteOverhead(ctx context.Context, pool *pgxpool.Pool, o WriteOptions) (WriteResult, error) {
	if o.Clients <= 0 {
		o.Clients = 8
	}
	if o.Duration <= 0 {
		o.Duration = time.Second
	}
	if o.Rounds <= 0 {
		o.Rounds = 10
	}
	sb, err := newSandbox(ctx, pool, o.Schema, func(c *postgres.Config) { c.NotifyInterval = o.NotifyInterval })
	if err != nil {
		return WriteResult{}, err
	}
	defer sb.drop()
	business := pgx.Identifier{sb.schema, "orders"}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+business+" (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer text NOT NULL, total numeric NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return WriteResult{}, fmt.Errorf("pgbench: create business table: %w", err)
	}
	insert := "INSERT INTO " + business + " (customer, total) VALUES ($1, $2)"
	// A relay would be listening: NOTIFY costs more with a listener than without.
	listenCtx, stopListening := context.WithCancel(ctx)
	signals, err := sb.store.Listen(listenCtx)
	if err != nil {
		stopListening()
		return WriteResult{}, err
	}
	go func() {
		for range signals {
		}
	}()
	defer stopListening()

	baseline := func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, insert, "c-42", "129.90")
		return err
	}
	var nextKey atomic.Int64
	withKey := func(key func() string) func(context.Context, pgx.Tx) error {
		return func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, insert, "c-42", "129.90"); err != nil {
				return err
			}
			return sb.store.Add(ctx, tx, &outbox.Message{Type: "ORDER_CREATED", Key: key(), Payload: samplePayload})
		}
	}
	outbox := withKey(func() string { return "order-" + strconv.FormatInt(nextKey.Add(1), 10) })
	unkeyed := withKey(func() string { return "" })
	hotKey := withKey(func() string { return "c-42" })
	// Warm up both paths (connections, prepared statements).
	if _, err := runTx(ctx, pool, o.Clients, 300*time.Millisecond, baseline); err != nil {
		return WriteResult{}, err
	}
	if _, err := runTx(ctx, pool, o.Clients, 300*time.Millisecond, outbox); err != nil {
		return WriteResult{}, err
	}
	r := WriteResult{Clients: o.Clients, Rounds: o.Rounds, Seconds: o.Duration.Seconds()}
	for range o.Rounds {
		n, err := runTx(ctx, pool, o.Clients, o.Duration, baseline)
		if err != nil {
			return WriteResult{}, err
		}
		r.BaselineRuns = append(r.BaselineRuns, float64(n)/o.Duration.Seconds())
		for _, v := range []struct {
			fn   func(context.Context, pgx.Tx) error
			runs *[]float64
		}{{outbox, &r.OutboxRuns}, {unkeyed, &r.UnkeyedRuns}, {hotKey, &r.HotKeyRuns}} {
			if n, err = runTx(ctx, pool, o.Clients, o.Duration, v.fn); err != nil {
				return WriteResult{}, err
			}
			*v.runs = append(*v.runs, float64(n)/o.Duration.Seconds())
		}
	}
	r.BaselineTPS, r.OutboxTPS = benchutil.Median(r.BaselineRuns), benchutil.Median(r.OutboxRuns)
	r.UnkeyedTPS, r.HotKeyTPS = benchutil.Median(r.UnkeyedRuns), benchutil.Median(r.HotKeyRuns)
	r.Ratio = ratio(r.BaselineTPS, r.OutboxTPS)
	r.UnkeyedRatio, r.HotKeyRatio = ratio(r.BaselineTPS, r.UnkeyedTPS), ratio(r.BaselineTPS, r.HotKeyTPS)
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
					once.Do(func() { firstErr = fmt.Errorf("pgbench: write: %w", err) })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return done.Load(), firstErr
}
