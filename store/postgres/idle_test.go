package postgres_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/transport/memory"
)

// countingTracer counts the statements sent through the connections it is attached to.
type countingTracer struct{ n atomic.Int64 }

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// An idle relay costs the database one claim per PollInterval; the notifier's connection only
// waits (its tracer is copied from the pool's config, so its statements would count too).
func TestIdleRelayQueries(t *testing.T) {
	schema := newSchema(t)
	ctx := context.Background()
	pcfg, err := pgxpool.ParseConfig(testURL())
	if err != nil {
		t.Fatal(err)
	}
	tracer := &countingTracer{}
	pcfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := openStore(t, postgres.Config{Pool: pool, Schema: schema})
	relay, err := outbox.NewRelay(s, memory.New(), outbox.Config{PollInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // start-up: LISTEN and the first claim
	before := tracer.n.Load()
	time.Sleep(4 * time.Second)
	idle := tracer.n.Load() - before
	if err := relay.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if idle > 5 {
		t.Fatalf("%d statements in 4s of idling, want at most one per second", idle)
	}
	t.Logf("%d statements in 4s idle", idle)
}
