package pgbench_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/txoutbox/outbox/cmd/outbox/internal/pgbench"
)

// The benchmark scenarios at toy sizes: they run end to end, clean up their schema and report
// sane numbers. Their real sizes run under go test -bench.
func TestBenchScenariosSmall(t *testing.T) {
	admin := adminPool(t)
	ctx := context.Background()
	pool, err := pgbench.Connect(ctx, testURL(), 8)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "outbox_bench_small_" + hex.EncodeToString(b[:])
	schemas := func() int {
		var n int
		_ = admin.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema).Scan(&n)
		return n
	}

	w, err := pgbench.WriteOverhead(ctx, pool, pgbench.WriteOptions{Clients: 2, Duration: 200 * time.Millisecond, Rounds: 1, Schema: schema})
	if err != nil || w.BaselineTPS <= 0 || w.OutboxTPS <= 0 || w.Ratio <= 0 {
		t.Fatalf("WriteOverhead = %+v, %v", w, err)
	}
	d, err := pgbench.Drain(ctx, pool, pgbench.DrainOptions{Events: 2000, Rounds: 1, Schema: schema})
	if err != nil || d.RelayPerSec <= 0 || d.RawPerSec <= 0 || d.HeldTxPerSec <= 0 || len(d.RelayRuns) != 1 {
		t.Fatalf("Drain = %+v, %v", d, err)
	}
	l, err := pgbench.Latency(ctx, pool, pgbench.LatencyOptions{Rate: 200, Duration: time.Second, Clients: 2, Schema: schema})
	if err != nil || l.Events != 200 || l.P50Ms <= 0 || l.P99Ms < l.P50Ms || l.CommitP50Ms <= 0 {
		t.Fatalf("Latency = %+v, %v", l, err)
	}
	if n := schemas(); n != 0 {
		t.Fatalf("scenario schema left behind")
	}
}
