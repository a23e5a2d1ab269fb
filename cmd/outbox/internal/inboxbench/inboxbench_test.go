package inboxbench

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// options returns what this machine offers: SQLite always; PostgreSQL and SQS when they
// answer (a quick run; skipping them is not a failure of the harness).
func options(t *testing.T, o Options) Options {
	o.SQLiteDir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	url := env("OUTBOX_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
	if pool, err := pgxpool.New(ctx, url); err == nil {
		if pool.Ping(ctx) == nil {
			o.PostgresURL = url
		}
		pool.Close()
	}
	if os.Getenv("INBOXBENCH_SQS") != "" {
		o.SQSEndpoint = env("OUTBOX_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566")
	}
	return o
}

func TestRunMeasuresBoth(t *testing.T) {
	r, err := Run(context.Background(), options(t, Options{Messages: 200, Concurrency: 4, Rounds: 2}))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) == 0 {
		t.Fatal("no rows")
	}
	for _, row := range r.Rows {
		if len(row.RawRuns) != 2 || len(row.InboxRuns) != 2 || row.RawPerSec <= 0 || row.InboxPerSec <= 0 ||
			row.Ratio != row.InboxPerSec/row.RawPerSec || (row.Consumer == "memory" && row.DuplicatesPerSec <= 0) {
			t.Errorf("row %+v", row)
		}
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	if _, err := Run(context.Background(), Options{Messages: -1}); err == nil {
		t.Fatal("negative Messages accepted")
	}
	if _, err := Run(context.Background(), Options{}); err == nil {
		t.Fatal("a run without a database accepted")
	}
}

// TestReport prints a full measurement as JSON when INBOXBENCH_REPORT is set (the numbers in
// docs/inbox.md): INBOXBENCH_REPORT=1 INBOXBENCH_SQS=1 go test -run TestReport -v.
func TestReport(t *testing.T) {
	if os.Getenv("INBOXBENCH_REPORT") == "" {
		t.Skip("set INBOXBENCH_REPORT=1 to measure")
	}
	r, err := Run(context.Background(), options(t, Options{Messages: 3000, Rounds: 3}))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	t.Logf("%s", b)
}
