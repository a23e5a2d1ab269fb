package walbench_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/outbox/cmd/outbox/internal/walbench"
	"github.com/txoutbox/outbox/outboxtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
}

// pool connects to the test server, skipping (failing in CI) when it is unreachable or cannot
// serve the WAL mode.
func pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := pgxpool.New(ctx, testURL())
	if err == nil {
		if err = p.Ping(ctx); err != nil {
			p.Close()
		}
	}
	if err != nil {
		outboxtest.NeedService(t, "PostgreSQL at "+testURL(), err)
	}
	t.Cleanup(p.Close)
	if err := walbench.NeedLogical(ctx, p); err != nil {
		outboxtest.NeedService(t, "PostgreSQL with wal_level = logical (scripts/services/postgres sets it)", err)
	}
	return p
}

// leftovers counts the benchmark's schemas and slots still on the server.
func leftovers(t *testing.T, p *pgxpool.Pool) (schemas, slots int) {
	t.Helper()
	ctx := context.Background()
	if err := p.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'outbox_walbench_%'").Scan(&schemas); err != nil {
		t.Fatal(err)
	}
	if err := p.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'outbox_outbox_walbench_%'").Scan(&slots); err != nil {
		t.Fatal(err)
	}
	return schemas, slots
}

// The scenarios at toy sizes: they run end to end, report sane numbers and leave no schema or
// slot behind. Their real sizes run under `outbox bench` and go test -bench.
func TestScenariosSmall(t *testing.T) {
	p := pool(t)
	ctx := context.Background()
	schemas0, slots0 := leftovers(t, p)

	w, err := walbench.Write(ctx, p, walbench.WriteOptions{Clients: 2, Duration: 200 * time.Millisecond, Rounds: 1})
	if err != nil || w.BaselineTPS <= 0 || w.TableTPS <= 0 || w.WALTPS <= 0 || w.TableRatio <= 0 || w.WALRatio <= 0 || w.RoundTripRatio <= 0 || w.RawEmitRatio <= 0 || w.WALExecuteRatio <= 0 || w.TableExecuteRatio <= 0 {
		t.Fatalf("Write = %+v, %v", w, err)
	}
	d, err := walbench.Drain(ctx, p, walbench.DrainOptions{Events: 3000, Rounds: 1})
	if err != nil || d.WALPerSec <= 0 || d.TablePerSec <= 0 || d.RawPerSec <= 0 || d.WALVsTable <= 0 || d.WALVsRaw <= 0 ||
		d.WALPeakRSSMiB <= 0 || d.TablePeakRSSMiB <= 0 || d.RawPeakRSSMiB <= 0 || len(d.WALRuns) != 1 {
		t.Fatalf("Drain = %+v, %v", d, err)
	}
	l, err := walbench.Latency(ctx, p, walbench.LatencyOptions{Rate: 200, Duration: time.Second, Clients: 2, Rounds: 1})
	for _, m := range []walbench.ModeLatency{l.WAL, l.Table} {
		if err != nil || m.Events != 200 || m.P50Ms <= 0 || m.P99Ms < m.P50Ms || m.CommitP50Ms <= 0 {
			t.Fatalf("Latency = %+v, %v", l, err)
		}
	}
	if schemas, slots := leftovers(t, p); schemas > schemas0 || slots > slots0 {
		t.Fatalf("%d schemas and %d slots left behind", schemas-schemas0, slots-slots0)
	}
	out, _ := json.Marshal(map[string]any{"write": w, "drain": d, "latency": l})
	t.Logf("%s", out)
}

func TestNeedLogicalNamesTheSetting(t *testing.T) {
	p := pool(t)
	if err := walbench.NeedLogical(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := walbench.NeedLogical(ctx, p); !errors.Is(err, context.Canceled) {
		t.Fatalf("NeedLogical on a cancelled context = %v", err)
	}
}

// The benchmarks run whole scenarios and report their ratios as metrics and their results as
// JSON in the log; each iteration is a full scenario, so -benchtime 1x is the meaningful setting:
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/walbench    (in cmd/outbox)

func logJSON(b *testing.B, v any) {
	b.Helper()
	out, _ := json.Marshal(v)
	b.Logf("%s", out)
}

func BenchmarkWrite(b *testing.B) {
	p := pool(b)
	for b.Loop() {
		r, err := walbench.Write(context.Background(), p, walbench.WriteOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.WALRatio, "wal-ratio")
		b.ReportMetric(r.TableRatio, "table-ratio")
		logJSON(b, r)
	}
}

func BenchmarkDrain(b *testing.B) {
	p := pool(b)
	for b.Loop() {
		r, err := walbench.Drain(context.Background(), p, walbench.DrainOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.WALPerSec, "wal-events/s")
		b.ReportMetric(r.WALVsTable, "wal-vs-table")
		b.ReportMetric(r.WALVsRaw, "wal-vs-raw")
		b.ReportMetric(r.WALPeakRSSMiB, "wal-peak-rss-MiB")
		logJSON(b, r)
	}
}

func BenchmarkLatency(b *testing.B) {
	p := pool(b)
	for b.Loop() {
		r, err := walbench.Latency(context.Background(), p, walbench.LatencyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.WAL.P99Ms, "wal-p99-ms")
		b.ReportMetric(r.WAL.BeyondCommitP99Ms, "wal-p99-beyond-commit-ms")
		b.ReportMetric(r.Table.P99Ms, "table-p99-ms")
		logJSON(b, r)
	}
}

// The large-transaction scenario at a toy size (its real size: BenchmarkLargeTx): every event
// published once, through a reader bounded at 1 MiB.
func TestLargeTxSmall(t *testing.T) {
	p := pool(t)
	schemas0, slots0 := leftovers(t, p)
	r, err := walbench.LargeTx(context.Background(), p, walbench.LargeTxOptions{Events: 300, PayloadBytes: 16 << 10, MaxBufferedBytes: 1 << 20})
	if err != nil || r.Duplicates != 0 || r.Missing != 0 || r.PendingAfter != 0 || r.PeakRSSMiB <= 0 || r.WALMiB < r.PayloadMiB || r.EventsPerSec <= 0 {
		t.Fatalf("LargeTx = %+v, %v", r, err)
	}
	if schemas, slots := leftovers(t, p); schemas > schemas0 || slots > slots0 {
		t.Fatalf("%d schemas and %d slots left behind", schemas-schemas0, slots-slots0)
	}
	out, _ := json.Marshal(r)
	t.Logf("%s", out)
}

// Sizes of BenchmarkLargeTx: 100k × 32 KiB (3.2 GB of WAL) by default; the server's
// max_slot_wal_keep_size must hold about twice the payload.
var (
	largeEvents = flag.Int("large-events", 100000, "BenchmarkLargeTx: events in the one transaction")
	largeSize   = flag.Int("large-size", 32<<10, "BenchmarkLargeTx: payload bytes per event")
	largeBound  = flag.Int64("large-max-buffered-bytes", 0, "BenchmarkLargeTx: the reader's MaxBufferedBytes (0: its default)")
)

func BenchmarkLargeTx(b *testing.B) {
	p := pool(b)
	for b.Loop() {
		r, err := walbench.LargeTx(context.Background(), p, walbench.LargeTxOptions{Events: *largeEvents, PayloadBytes: *largeSize, MaxBufferedBytes: *largeBound})
		logJSON(b, r)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.PeakRSSMiB, "peak-rss-MiB")
		b.ReportMetric(r.PeakOverBound, "peak-over-base-vs-bound")
		b.ReportMetric(r.EventsPerSec, "events/s")
	}
}
