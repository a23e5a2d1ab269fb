package mysqlbench_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/mysqlbench"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/mysql"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_MYSQL_URL", "mysql://outbox:outbox@127.0.0.1:3306/outbox_test")
}

// admin connects to the test server or skips (fails in CI) when it is unreachable.
func admin(t testing.TB) *sql.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := mysql.New(ctx, mysql.Config{URL: outbox.Secret(testURL()), ConnectTimeout: 5 * time.Second})
	if err != nil {
		outboxtest.NeedService(t, "MySQL or MariaDB at "+testURL(), err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s.DB()
}

// The scenarios at toy sizes: they run end to end, drop their tables and report real
// measurements (positive rates and latencies, every run recorded). Their real sizes run under
// go test -bench and outbox bench.
func TestScenariosSmall(t *testing.T) {
	db := admin(t)
	ctx := context.Background()
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "outbox_bench_small_" + hex.EncodeToString(b[:])
	tables := func() int {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?",
			table+"%").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	url := testURL()

	w, err := mysqlbench.WriteOverhead(ctx, url, mysqlbench.WriteOptions{Clients: 2, Duration: 200 * time.Millisecond, Rounds: 1, Table: table})
	if err != nil || w.BaselineTPS <= 0 || w.OutboxTPS <= 0 || w.UnkeyedTPS <= 0 || w.HotKeyTPS <= 0 ||
		w.Ratio != w.BaselineTPS/w.OutboxTPS || len(w.BaselineRuns) != 1 || w.Server == "" {
		t.Fatalf("WriteOverhead = %+v, %v", w, err)
	}
	d, err := mysqlbench.Drain(ctx, url, mysqlbench.DrainOptions{Events: 2000, Rounds: 1, Table: table})
	if err != nil || d.RelayPerSec <= 0 || d.RawPerSec <= 0 || d.Ratio != d.RelayPerSec/d.RawPerSec ||
		len(d.RelayRuns) != 1 || len(d.RawRuns) != 1 || d.Events != 2000 {
		t.Fatalf("Drain = %+v, %v", d, err)
	}
	l, err := mysqlbench.Latency(ctx, url, mysqlbench.LatencyOptions{Rate: 200, Duration: time.Second, Clients: 2,
		PollInterval: 100 * time.Millisecond, Table: table})
	if err != nil || len(l.Runs) != 2 || l.PollIntervalMs != 100 {
		t.Fatalf("Latency = %+v, %v", l, err)
	}
	for i, run := range l.Runs {
		if run.Wake != []string{mysqlbench.WakeSignal, mysqlbench.WakePoll}[i] || run.Events != 200 || run.P50Ms <= 0 ||
			run.P99Ms < run.P50Ms || run.MaxMs < run.P99Ms || run.CommitP50Ms <= 0 || run.TargetP99Ms != 120 {
			t.Fatalf("Latency run %d = %+v", i, run)
		}
	}
	o, err := mysqlbench.Ordered(ctx, url, mysqlbench.OrderedOptions{
		Backlogs: []mysqlbench.Backlog{{Keys: 20, PerKey: 10}, {Keys: 1, PerKey: 200}}, BatchSize: 50, Rounds: 1, Table: table})
	if err != nil || len(o.Backlogs) != 2 {
		t.Fatalf("Ordered = %+v, %v", o, err)
	}
	for _, bl := range o.Backlogs {
		if bl.UnorderedPerSec <= 0 || bl.OrderedPerSec <= 0 || bl.Ratio <= 0 || len(bl.OrderedRuns) != 1 {
			t.Fatalf("Ordered backlog %+v: %+v", bl.Backlog, bl)
		}
	}
	// The results are what bench prints: they encode with their fields.
	out, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(out, &fields); err != nil || fields["ratio"] == nil || fields["raw_select_delete_events_per_sec"] == nil {
		t.Fatalf("Drain JSON %s: %v", out, err)
	}
	if n := tables(); n != 0 {
		t.Fatalf("%d scenario tables left behind", n)
	}
}

// The benchmarks run whole scenarios (seconds each) and log their JSON:
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/mysqlbench    (in cmd/outbox)
//
// OUTBOX_BENCH_ROUNDS sets the rounds of each.
func rounds() int {
	n, _ := strconv.Atoi(os.Getenv("OUTBOX_BENCH_ROUNDS"))
	return n
}

func logJSON(b *testing.B, v any) {
	out, _ := json.Marshal(v)
	b.Logf("%s", out)
}

func BenchmarkWriteOverhead(b *testing.B) {
	admin(b)
	for b.Loop() {
		r, err := mysqlbench.WriteOverhead(context.Background(), testURL(), mysqlbench.WriteOptions{Rounds: rounds()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.Ratio, "ratio")
		logJSON(b, r)
	}
}

func BenchmarkDrain(b *testing.B) {
	admin(b)
	for b.Loop() {
		r, err := mysqlbench.Drain(context.Background(), testURL(), mysqlbench.DrainOptions{Rounds: rounds()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.Ratio, "ratio")
		logJSON(b, r)
	}
}

func BenchmarkLatency(b *testing.B) {
	admin(b)
	for b.Loop() {
		r, err := mysqlbench.Latency(context.Background(), testURL(), mysqlbench.LatencyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		logJSON(b, r)
	}
}

func BenchmarkOrdered(b *testing.B) {
	admin(b)
	for b.Loop() {
		r, err := mysqlbench.Ordered(context.Background(), testURL(), mysqlbench.OrderedOptions{Rounds: max(rounds(), 1)})
		if err != nil {
			b.Fatal(err)
		}
		logJSON(b, r)
	}
}
