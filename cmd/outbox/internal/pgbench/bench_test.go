package pgbench_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/outbox/cmd/outbox/internal/pgbench"
	"github.com/txoutbox/outbox/outboxtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
}

// adminPool connects to the test server or skips (fails in CI) when it is unreachable.
func adminPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, testURL())
	if err == nil {
		if err = pool.Ping(ctx); err != nil {
			pool.Close()
		}
	}
	if err != nil {
		outboxtest.NeedService(t, "PostgreSQL at "+testURL(), err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// The benchmarks run whole scenarios (seconds each) from package pgbench and report their
// results as metrics, ratios to a raw baseline included, and as JSON in the log:
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/pgbench    (in cmd/outbox)
//
// Each iteration is a full scenario, so -benchtime 1x is the meaningful setting.

func benchPool(b *testing.B, clients int) *pgxpool.Pool {
	b.Helper()
	adminPool(b) // skip (or fail in CI) when PostgreSQL is unreachable
	pool, err := pgbench.Connect(context.Background(), testURL(), clients)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

func logJSON(b *testing.B, v any) {
	out, _ := json.Marshal(v)
	b.Logf("%s", out)
}

func BenchmarkWriteOverhead(b *testing.B) {
	pool := benchPool(b, 8)
	for b.Loop() {
		r, err := pgbench.WriteOverhead(context.Background(), pool, pgbench.WriteOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.BaselineTPS, "baseline_tx/s")
		b.ReportMetric(r.OutboxTPS, "outbox_tx/s")
		b.ReportMetric(r.Ratio, "ratio")
		logJSON(b, r)
	}
}

// BenchmarkDrain drains 100k events; OUTBOX_BENCH_DRAIN_EVENTS sets another backlog size (the
// 1M run in docs/bench/postgres.md) and OUTBOX_BENCH_ROUNDS the rounds per variant.
func BenchmarkDrain(b *testing.B) {
	pool := benchPool(b, 8)
	events, _ := strconv.Atoi(os.Getenv("OUTBOX_BENCH_DRAIN_EVENTS"))
	rounds, _ := strconv.Atoi(os.Getenv("OUTBOX_BENCH_ROUNDS"))
	for b.Loop() {
		r, err := pgbench.Drain(context.Background(), pool, pgbench.DrainOptions{Events: events, Rounds: rounds})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.RelayPerSec, "relay_events/s")
		b.ReportMetric(r.RawPerSec, "raw_events/s")
		b.ReportMetric(r.Ratio, "ratio")
		b.ReportMetric(r.HeldTxPerSec, "heldtx_events/s")
		logJSON(b, r)
	}
}

func BenchmarkLatency(b *testing.B) {
	pool := benchPool(b, 20)
	for _, mode := range []struct {
		name     string
		pollOnly bool
	}{{"Notify", false}, {"PollOnly", true}} {
		b.Run(mode.name, func(b *testing.B) {
			for b.Loop() {
				r, err := pgbench.Latency(context.Background(), pool, pgbench.LatencyOptions{PollOnly: mode.pollOnly})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.P50Ms, "p50_ms")
				b.ReportMetric(r.P99Ms, "p99_ms")
				b.ReportMetric(r.CommitP50Ms, "commit_p50_ms")
				b.ReportMetric(r.AchievedPS, "events/s")
				logJSON(b, r)
			}
		})
	}
}

// BenchmarkOrdered runs each backlog once per variant; OUTBOX_BENCH_ROUNDS sets more rounds
// (medians are reported).
func BenchmarkOrdered(b *testing.B) {
	pool := benchPool(b, 8)
	rounds, _ := strconv.Atoi(os.Getenv("OUTBOX_BENCH_ROUNDS"))
	for b.Loop() {
		r, err := pgbench.Ordered(context.Background(), pool, pgbench.OrderedOptions{Rounds: max(rounds, 1)})
		if err != nil {
			b.Fatal(err)
		}
		logJSON(b, r)
	}
}

func BenchmarkLatencyOrdered(b *testing.B) {
	pool := benchPool(b, 20)
	for b.Loop() {
		r, err := pgbench.Latency(context.Background(), pool, pgbench.LatencyOptions{Ordered: true})
		if err != nil {
			b.Fatal(err)
		}
		logJSON(b, r)
	}
}
