package pgbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

// samplePayload is a typical small event body.
var samplePayload = []byte(`{"order_id":1234567,"customer":"c-42","amount":"129.90","currency":"EUR","items":3}`)

// Connect opens a pool for url with room for clients connections.
func Connect(ctx context.Context, url string, clients int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgbench: invalid connection string")
	}
	if int32(clients) > cfg.MaxConns {
		cfg.MaxConns = int32(clients)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgbench: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgbench: connect: %w", err)
	}
	return pool, nil
}

// sandbox is a schema of its own for one scenario, with an outbox store over it.
type sandbox struct {
	pool   *pgxpool.Pool
	schema string
	store  *postgres.Store
}

func newSandbox(ctx context.Context, pool *pgxpool.Pool, schema string, tweak func(*postgres.Config)) (*sandbox, error) {
	if schema == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		schema = "outbox_bench_" + hex.EncodeToString(b[:])
	}
	if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return nil, fmt.Errorf("pgbench: create schema: %w", err)
	}
	sb := &sandbox{pool: pool, schema: schema}
	cfg := postgres.Config{Pool: pool, Schema: schema}
	if tweak != nil {
		tweak(&cfg)
	}
	store, err := postgres.New(ctx, cfg)
	if err != nil {
		sb.drop()
		return nil, err
	}
	sb.store = store
	if err := store.EnsureSchema(ctx); err != nil {
		sb.drop()
		return nil, err
	}
	return sb, nil
}

// drop removes the schema and everything in it.
func (sb *sandbox) drop() {
	if sb.store != nil {
		_ = sb.store.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = sb.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{sb.schema}.Sanitize()+" CASCADE")
}

// fill writes n events through Add, in transactions of 1000, then vacuums and analyzes the
// table so every run starts from the same physical state. Events take turns over 1000 keys.
func (sb *sandbox) fill(ctx context.Context, n int) error { return sb.fillKeys(ctx, n, 1000) }

// fillKeys is fill with events taking turns over keys keys, as writes from many aggregates
// interleave.
func (sb *sandbox) fillKeys(ctx context.Context, n, keys int) error {
	const per = 1000
	for done := 0; done < n; done += per {
		batch := make([]*outbox.Message, 0, per)
		for i := done; i < n && i < done+per; i++ {
			batch = append(batch, &outbox.Message{Type: "ORDER_CREATED", Key: fmt.Sprintf("order-%d", i%keys), Payload: samplePayload})
		}
		if err := pgx.BeginFunc(ctx, sb.pool, func(tx pgx.Tx) error { return sb.store.Add(ctx, tx, batch...) }); err != nil {
			return fmt.Errorf("pgbench: fill: %w", err)
		}
	}
	if _, err := sb.pool.Exec(ctx, "VACUUM ANALYZE "+sb.store.Table()); err != nil {
		return fmt.Errorf("pgbench: vacuum: %w", err)
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
