package mysqlbench

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
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
	// Table to work in. Default: a fresh random one, dropped afterwards.
	Table string
}

// WriteResult compares a one-row business transaction with the same transaction plus Add of one
// event (and Notify after the commit, as Execute does). Ratio is the outbox transaction's mean
// duration over the baseline's (1.25 = 25% slower).
//
// The event is written three ways: with a Key of its own per transaction (OutboxTPS, the common
// case: each aggregate its key; Add also locks that key's row of the key-lock table), without a
// Key (Unkeyed: no key lock), and with the same Key in every transaction (HotKey): writers of
// one key take turns until commit, so that one measures what ordering by commit costs when
// every client writes the same key.
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
	Server       string    `json:"server"`
}

// WriteOverhead measures what the outbox write adds to a business transaction.
func WriteOverhead(ctx context.Context, url string, o WriteOptions) (WriteResult, error) {
	if o.Clients <= 0 {
		o.Clients = 8
	}
	if o.Duration <= 0 {
		o.Duration = time.Second
	}
	if o.Rounds <= 0 {
		o.Rounds = 10
	}
	sb, err := newSandbox(ctx, url, o.Table, o.Clients+2)
	if err != nil {
		return WriteResult{}, err
	}
	defer sb.drop()
	business := quoted(sb.table + "_orders")
	if _, err := sb.db.ExecContext(ctx, "CREATE TABLE "+business+" (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, customer VARCHAR(64) NOT NULL, "+
		"total DECIMAL(12,2) NOT NULL, created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"); err != nil {
		return WriteResult{}, fmt.Errorf("mysqlbench: create business table: %w", err)
	}
	insert := "INSERT INTO " + business + " (customer, total) VALUES (?, ?)"
	// A relay would be listening: Notify then has a listener to wake.
	listenCtx, stopListening := context.WithCancel(ctx)
	signals, err := sb.store.Listen(listenCtx)
	if err != nil {
		stopListening()
		return WriteResult{}, err
	}
	var listening sync.WaitGroup
	listening.Go(func() {
		for range signals {
		}
	})
	defer listening.Wait()
	defer stopListening()

	baseline := func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, insert, "c-42", "129.90")
		return err
	}
	var nextKey atomic.Int64
	withKey := func(key func() string) func(context.Context, *sql.Tx) error {
		return func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, insert, "c-42", "129.90"); err != nil {
				return err
			}
			return sb.store.Add(ctx, tx, &outbox.Message{Type: "ORDER_CREATED", Key: key(), Payload: samplePayload})
		}
	}
	keyed := withKey(func() string { return "order-" + strconv.FormatInt(nextKey.Add(1), 10) })
	unkeyed := withKey(func() string { return "" })
	hotKey := withKey(func() string { return "c-42" })
	run := func(fn func(context.Context, *sql.Tx) error, notify bool, d time.Duration) (int64, error) {
		return runTx(ctx, sb, o.Clients, d, fn, notify)
	}
	// Warm up both paths (connections, statements, the tables' first pages).
	if _, err := run(baseline, false, 300*time.Millisecond); err != nil {
		return WriteResult{}, err
	}
	if _, err := run(keyed, true, 300*time.Millisecond); err != nil {
		return WriteResult{}, err
	}
	r := WriteResult{Clients: o.Clients, Rounds: o.Rounds, Seconds: o.Duration.Seconds(), Server: sb.store.ServerVersion()}
	for range o.Rounds {
		n, err := run(baseline, false, o.Duration)
		if err != nil {
			return WriteResult{}, err
		}
		r.BaselineRuns = append(r.BaselineRuns, float64(n)/o.Duration.Seconds())
		for _, v := range []struct {
			fn   func(context.Context, *sql.Tx) error
			runs *[]float64
		}{{keyed, &r.OutboxRuns}, {unkeyed, &r.UnkeyedRuns}, {hotKey, &r.HotKeyRuns}} {
			if n, err = run(v.fn, true, o.Duration); err != nil {
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

// runTx runs fn in transactions from clients goroutines for d and returns how many committed;
// notify calls the store's Notify after each commit, as Execute does.
func runTx(ctx context.Context, sb *sandbox, clients int, d time.Duration, fn func(context.Context, *sql.Tx) error, notify bool) (int64, error) {
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := sb.inTx(ctx, func(tx *sql.Tx) error { return fn(ctx, tx) }); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("mysqlbench: write: %w", err) })
					return
				}
				if notify {
					sb.store.Notify()
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return done.Load(), firstErr
}
