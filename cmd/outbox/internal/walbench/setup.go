// Package walbench measures PostgreSQL's WAL mode (postgres.WALConfig) beside the table mode
// and raw baselines on the same server in the same run, so results read as ratios that hold
// across machines. `outbox bench --only wal-write,wal-drain,wal-latency` and `go test -bench` here
// (in cmd/outbox/internal/walbench) call the scenarios:
//
//   - Write: a one-row business transaction alone, with a table-mode Add, with a WAL-mode Add.
//   - Drain: a backlog written while no relay ran, drained through outbox.Relay to the memory
//     transport in WAL mode and in table mode, and by a raw pglogrepl loop that only reads the
//     slot and confirms; with the process's peak RSS during each drain.
//   - Latency: end-to-end latency at a steady rate in WAL mode and in table mode, beside the
//     write transaction's own.
//   - LargeTx: one transaction far larger than the WAL reader's buffer (100k × 32 KiB by
//     default), drained through outbox.Relay, with the process's peak RSS beside the reader's
//     bound (go test -bench LargeTx only).
//
// Every scenario works in schemas of its own (and their slots), dropped afterwards.
package walbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

// samplePayload is a typical small event body (the one the table-mode benchmarks use).
var samplePayload = []byte(`{"order_id":1234567,"customer":"c-42","amount":"129.90","currency":"EUR","items":3}`)

// NeedLogical returns an error unless the server can serve the WAL mode.
func NeedLogical(ctx context.Context, pool *pgxpool.Pool) error {
	var level string
	if err := pool.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return fmt.Errorf("walbench: %w", err)
	}
	if level != "logical" {
		return fmt.Errorf("walbench: the server's wal_level is %s; the WAL mode needs logical", level)
	}
	return nil
}

// sandbox is a schema of its own with an outbox store over it, in table or WAL mode; in WAL
// mode it owns the slot and publication too.
type sandbox struct {
	pool   *pgxpool.Pool
	schema string
	cfg    postgres.Config
	store  *postgres.Store
	slot   string // "" in table mode
	pub    string
}

func newSandbox(ctx context.Context, pool *pgxpool.Pool, wal bool) (*sandbox, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "outbox_walbench_" + hex.EncodeToString(b[:])
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return nil, fmt.Errorf("walbench: create schema: %w", err)
	}
	sb := &sandbox{pool: pool, schema: schema, cfg: postgres.Config{Pool: pool, Schema: schema}}
	if wal {
		sb.cfg.WAL = &postgres.WALConfig{}
	}
	if err := sb.open(ctx); err != nil {
		sb.drop()
		return nil, err
	}
	if err := sb.store.EnsureSchema(ctx); err != nil {
		sb.drop()
		return nil, fmt.Errorf("walbench: schema: %w", err)
	}
	if wal {
		st, err := sb.store.SlotStatus(ctx)
		if err != nil {
			sb.drop()
			return nil, err
		}
		sb.slot, sb.pub = st.Slot, st.Slot // the publication defaults to the slot's name
	}
	return sb, nil
}

// open opens a store over the sandbox (again): in WAL mode a store's reader holds the slot
// until the store closes, so each drain runs on a store of its own.
func (sb *sandbox) open(ctx context.Context) error {
	s, err := postgres.New(ctx, sb.cfg)
	if err != nil {
		return fmt.Errorf("walbench: open store: %w", err)
	}
	sb.store = s
	return nil
}

// reopen closes the store and opens another, whose reader starts from the slot's position.
func (sb *sandbox) reopen(ctx context.Context) error {
	_ = sb.store.Close()
	return sb.open(ctx)
}

// drop removes the slot, the publication and the schema. The slot can be dropped only once
// no connection reads it: a closed reader's server process may take a moment to exit.
func (sb *sandbox) drop() {
	if sb.store != nil {
		_ = sb.store.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if sb.slot != "" {
		for {
			_, err := sb.pool.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", sb.slot)
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond) // the walsender exits on its own; nothing to wait on
		}
		_, _ = sb.pool.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{sb.pub}.Sanitize())
	}
	_, _ = sb.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{sb.schema}.Sanitize()+" CASCADE")
}

// fillPerTx is how many events fill writes per transaction (one Add).
const fillPerTx = 1000

// fill writes n events through Add, in transactions of fillPerTx from 4 writers, taking turns
// over 1000 keys; a table-mode table is then vacuumed and analyzed, so every drain starts from
// the same physical state.
func (sb *sandbox) fill(ctx context.Context, n int) error {
	const per, writers = fillPerTx, 4
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			for done := w * per; done < n; done += writers * per {
				batch := make([]*outbox.Message, 0, per)
				for i := done; i < n && i < done+per; i++ {
					batch = append(batch, &outbox.Message{Type: "ORDER_CREATED", Key: fmt.Sprintf("order-%d", i%1000), Payload: samplePayload})
				}
				if err := pgx.BeginFunc(ctx, sb.pool, func(tx pgx.Tx) error { return sb.store.Add(ctx, tx, batch...) }); err != nil {
					errs[w] = fmt.Errorf("walbench: fill: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if sb.slot == "" {
		if _, err := sb.pool.Exec(ctx, "VACUUM ANALYZE "+sb.store.Table()); err != nil {
			return fmt.Errorf("walbench: vacuum: %w", err)
		}
	}
	return nil
}

// ratio returns a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
