package mysqlbench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/transport/memory"
)

// Relay settings of the drain, the same as pgbench's: batches large enough to amortise each
// claim's and ack's round trips, and enough cycles in flight to keep the server busy while the
// relay publishes.
const (
	DrainBatchSize   = 500
	DrainConcurrency = 4
)

// DrainOptions tunes Drain.
type DrainOptions struct {
	// Events in the backlog. Default 100000.
	Events int
	// BatchSize of the relay. Default DrainBatchSize.
	BatchSize int
	// Concurrency of the relay and of the raw loop. Default DrainConcurrency.
	Concurrency int
	// RawLimit is the LIMIT of the raw loop's SELECT. Default 100, as pgbench's raw DELETE.
	RawLimit int
	// Rounds is how many times each variant runs; results are medians. Default 3.
	Rounds int
	// Table to work in. Default: a fresh random one, dropped afterwards.
	Table string
}

// DrainResult compares draining a backlog through the relay with raw SQL on the same data.
type DrainResult struct {
	Events      int `json:"events"`
	Rounds      int `json:"rounds"`
	BatchSize   int `json:"batch_size"`
	Concurrency int `json:"concurrency"`
	// RelayPerSec: outbox.Relay (unordered, as the raw loop is) with the MySQL store (claim:
	// SELECT ... FOR UPDATE SKIP LOCKED + UPDATE lease, commit; ack: DELETE, commit) to the
	// memory transport.
	RelayPerSec float64 `json:"relay_events_per_sec"`
	// RawPerSec: transactions of SELECT ... ORDER BY seq LIMIT RawLimit FOR UPDATE SKIP LOCKED
	// reading every column a message needs, then DELETE ... WHERE seq IN (...), then COMMIT, in
	// a loop, publishing nothing.
	RawPerSec float64 `json:"raw_select_delete_events_per_sec"`
	RawLimit  int     `json:"raw_limit"`
	// RawDeadlocks counts the raw transactions InnoDB aborted as deadlock victims (run again, as
	// the store runs its own), over every raw run.
	RawDeadlocks int `json:"raw_deadlocks"`
	// Ratio is RelayPerSec / RawPerSec.
	Ratio float64 `json:"ratio"`
	// The rate of every run, in run order.
	RelayRuns []float64 `json:"relay_runs"`
	RawRuns   []float64 `json:"raw_runs"`
	Server    string    `json:"server"`
}

// Drain fills a backlog and drains it two ways on the same table: the relay and the raw loop.
// Each run refills the table first; the variants take turns, Rounds times, and each reports its
// median, so load from other processes hits them alike.
func Drain(ctx context.Context, url string, o DrainOptions) (DrainResult, error) {
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
	sb, err := newSandbox(ctx, url, o.Table, o.Concurrency+2)
	if err != nil {
		return DrainResult{}, err
	}
	defer sb.drop()
	r := DrainResult{Events: o.Events, BatchSize: o.BatchSize, Concurrency: o.Concurrency, RawLimit: o.RawLimit, Rounds: o.Rounds,
		Server: sb.store.ServerVersion()}
	variants := []struct {
		rates *[]float64
		run   func() (float64, error)
	}{
		{&r.RawRuns, func() (float64, error) { return sb.rawDrain(ctx, o.Concurrency, o.RawLimit, o.Events, &r.RawDeadlocks) }},
		{&r.RelayRuns, func() (float64, error) { return sb.relayDrain(ctx, o.BatchSize, o.Concurrency, o.Events, false) }},
	}
	for range o.Rounds {
		for _, v := range variants {
			if err := sb.fill(ctx, o.Events, 1000); err != nil {
				return r, err
			}
			rate, err := v.run()
			if err != nil {
				return r, err
			}
			*v.rates = append(*v.rates, rate)
		}
	}
	r.RawPerSec, r.RelayPerSec = benchutil.Median(r.RawRuns), benchutil.Median(r.RelayRuns)
	r.Ratio = ratio(r.RelayPerSec, r.RawPerSec)
	return r, nil
}

// relayDrain drains the table with a relay to the memory transport and returns events/s, from
// Start to the last delivery; it checks the table is empty after the relay stops.
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
		return 0, fmt.Errorf("mysqlbench: relay drain: %d of %d delivered: %w", transport.Len(), events, err)
	}
	if left, err := sb.count(ctx); err != nil || left != 0 {
		return 0, fmt.Errorf("mysqlbench: relay drain: %d rows left after every delivery (%v)", left, err)
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
		return 0, fmt.Errorf("mysqlbench: drained %d events, want %d", total, events)
	}
	return float64(events) / elapsed.Seconds(), nil
}

// rawDrain is the raw baseline: what a hand-written SKIP LOCKED consumer does, at READ
// COMMITTED as the store's claims, reading the columns a message is made of.
// A transaction InnoDB aborts as a deadlock victim (DELETE takes the locks of the secondary
// index entries it removes) or after a lock wait is run again, as the store does, and counted
// in deadlocks.
func (sb *sandbox) rawDrain(ctx context.Context, concurrency, limit, events int, deadlocks *int) (float64, error) {
	sel := fmt.Sprintf("SELECT seq, id, type, msg_key, payload, headers, created_at FROM %s FORCE INDEX (outbox_claim) "+
		"WHERE status = 'pending' ORDER BY seq LIMIT %d FOR UPDATE SKIP LOCKED", sb.t(), limit)
	opts := &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	var mu sync.Mutex
	rate, err := loop(ctx, concurrency, events, func(ctx context.Context) (int, error) {
		for try := 1; ; try++ {
			n, err := rawStep(ctx, sb, sel, opts)
			var me *mysql.MySQLError
			if errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205) && try < 10 {
				mu.Lock()
				*deadlocks++
				mu.Unlock()
				continue
			}
			return n, err
		}
	})
	if err != nil {
		return 0, fmt.Errorf("mysqlbench: raw drain: %w", err)
	}
	return rate, nil
}

// rawStep is one transaction of the raw loop; it returns how many rows it deleted.
func rawStep(ctx context.Context, sb *sandbox, sel string, opts *sql.TxOptions) (int, error) {
	n := 0
	err := inTx(ctx, sb.db, opts, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, sel)
		if err != nil {
			return err
		}
		var seqs []any
		for rows.Next() {
			var (
				seq     int64
				m       outbox.Message
				payload string
				headers sql.NullString
			)
			if err := rows.Scan(&seq, &m.ID, &m.Type, &m.Key, &payload, &headers, &m.CreatedAt); err != nil {
				rows.Close()
				return err
			}
			m.Payload = json.RawMessage(payload)
			seqs = append(seqs, seq)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		n = len(seqs)
		if n == 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM "+sb.t()+" WHERE seq IN ("+strings.TrimSuffix(strings.Repeat("?,", n), ",")+")", seqs...)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
