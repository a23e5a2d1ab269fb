package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/corebench"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/mysql"
)

func TestBenchCorePrintsJSONWithBaselineAndProgress(t *testing.T) {
	old := progressEvery
	progressEvery = time.Millisecond // every run is "long" here, so the progress line shows
	t.Cleanup(func() { progressEvery = old })

	code, stdout, stderr := runCLI(t, nil, "bench", "--only", "core", "--events", "20000", "--rounds", "1")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, stderr)
	}
	var report struct {
		GoVersion string `json:"go_version"`
		CPUs      int    `json:"cpus"`
		Results   struct {
			Core corebench.Result `json:"core"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("bench output is not the JSON report: %v\n%s", err, stdout)
	}
	r := report.Results.Core
	if report.GoVersion == "" || report.CPUs == 0 || r.Events != 20000 || r.Rounds != 1 ||
		r.RawPerSec <= 0 || r.RelayPerSec <= 0 || r.Ratio != r.RelayPerSec/r.RawPerSec {
		t.Errorf("report %+v", report)
	}
	for _, want := range []string{"bench: core: running", "bench: core: still running", "bench: core: done"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestBenchSelection(t *testing.T) {
	const pg = "postgres://u@127.0.0.1:5432/db"
	const my = "mysql://u:p@127.0.0.1:3306/db"
	for _, tt := range []struct {
		b    benchFlags
		want []string
	}{
		{benchFlags{}, []string{"core", "kafka"}},
		{benchFlags{store: pg}, []string{"core", "postgres-write", "postgres-drain", "postgres-latency", "kafka"}},
		{benchFlags{sqsEndpoint: "http://127.0.0.1:4566", natsURL: "nats://127.0.0.1:4222", rabbitmqURL: "amqp://g:g@127.0.0.1:5672/", kafkaBrokers: "127.0.0.1:9092"},
			[]string{"core", "sqs", "sqs-fifo", "kafka", "nats", "rabbitmq"}},
		{benchFlags{only: "sqlite-ordered, inbox,sqlite-ordered"}, []string{"sqlite-ordered", "inbox"}},
		{benchFlags{only: "postgres-ordered", store: pg}, []string{"postgres-ordered"}},
		{benchFlags{only: "kafka"}, []string{"kafka"}},
		{benchFlags{store: my}, []string{"core", "mysql-write", "mysql-drain", "mysql-latency", "kafka"}},
		{benchFlags{only: "mysql-drain,mysql-write,mysql-latency,mysql-ordered", store: my}, []string{"mysql-drain", "mysql-write", "mysql-latency", "mysql-ordered"}},
		{benchFlags{only: "wal-write,wal-drain,wal-latency", store: pg}, []string{"wal-write", "wal-drain", "wal-latency"}},
	} {
		got, err := tt.b.selection("outbox bench")
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%+v: %v, %v; want %v", tt.b, got, err, tt.want)
		}
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--only", "nats"}, "--only nats: needs --nats-url"},
		{[]string{"--only", "rabbitmq"}, "--only rabbitmq: needs --rabbitmq-url"},
		{[]string{"--only", "postgres-ordered"}, "--only postgres-ordered: needs --store"},
		{[]string{"--only", "wal-drain"}, "--only wal-drain: needs --store"},
		{[]string{"--only", "mysql-drain"}, "--only mysql-drain: needs --store mysql://"},
		{[]string{"--only", "mysql-drain", "--store", "postgres://u:typed-secret@h:5432/db"}, "--only mysql-drain: needs --store mysql://"},
		{[]string{"--only", "postgres-drain", "--store", "mysql://u:typed-secret@h:3306/db"}, "--only postgres-drain: needs --store postgres://"},
		{[]string{"--store", "sqlite:x.db"}, "need a postgres:// URL or a mysql:// one"},
		{[]string{"--kafka-brokers", "h:1,broker"}, "--kafka-brokers (OUTBOX_KAFKA_BROKERS): want host:port"},
		{[]string{"--nats-url", "http://h:4222"}, "--nats-url (OUTBOX_NATS_URL): must start with nats:// or tls://"},
		{[]string{"--rabbitmq-url", "http://guest:typed-secret@h:5672/"}, "--rabbitmq-url (OUTBOX_RABBITMQ_URL): must start with amqp://"},
	} {
		code, stdout, stderr := runCLI(t, nil, append([]string{"bench"}, tt.args...)...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tt.want) || strings.Contains(stderr, "typed-secret") {
			t.Errorf("bench %v: exit %d, stdout %q, stderr %q; want 2 and %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
}

// benchResult runs bench with args and returns the named result.
func benchResult(t *testing.T, vars map[string]string, name string, args ...string) map[string]any {
	t.Helper()
	code, stdout, stderr := runCLI(t, vars, append([]string{"bench", "--only", name}, args...)...)
	if code != 0 {
		t.Fatalf("bench %s: exit %d: %s", name, code, stderr)
	}
	var report struct {
		Results map[string]map[string]any `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("bench output is not the JSON report: %v\n%s", err, stdout)
	}
	r, ok := report.Results[name]
	if !ok || len(report.Results) != 1 {
		t.Fatalf("bench --only %s reported %v", name, report.Results)
	}
	return r
}

// Each broker's benchmark runs from the command at a small size and reports a ratio to its raw
// baseline: Kafka on the in-process fake cluster, NATS and RabbitMQ on the machine's servers.
func TestBenchBrokers(t *testing.T) {
	if testing.Short() {
		t.Skip("measures against the brokers")
	}
	ratio := func(t *testing.T, r map[string]any) {
		t.Helper()
		if v, ok := r["ratio"].(float64); !ok || v <= 0 || r["rounds"] != float64(1) || r["events"] != float64(2000) {
			t.Errorf("result %v, want 2000 events, 1 round and a positive ratio", r)
		}
	}
	t.Run("kafka", func(t *testing.T) {
		r := benchResult(t, nil, "kafka", "--events", "2000", "--rounds", "1")
		ratio(t, r)
		if r["cluster"] != "kfake" {
			t.Errorf("cluster %v without --kafka-brokers, want kfake", r["cluster"])
		}
	})
	t.Run("nats", func(t *testing.T) {
		nc, err := natsgo.Connect(natsURL(), natsgo.Timeout(3*time.Second))
		if err != nil {
			outboxtest.NeedService(t, "NATS with JetStream at "+natsURL(), err)
		}
		nc.Close()
		ratio(t, benchResult(t, map[string]string{"OUTBOX_NATS_URL": natsURL()}, "nats", "--events", "2000", "--rounds", "1"))
	})
	t.Run("rabbitmq", func(t *testing.T) {
		conn, err := amqp.Dial(rabbitmqURL())
		if err != nil {
			outboxtest.NeedService(t, "RabbitMQ at 127.0.0.1:5672", err)
		}
		_ = conn.Close()
		r := benchResult(t, map[string]string{"OUTBOX_RABBITMQ_URL": rabbitmqURL()}, "rabbitmq", "--events", "2000", "--rounds", "1")
		ratio(t, r)
		if b, _ := r["broker"].(string); strings.Contains(b, "guest:guest") {
			t.Errorf("the result shows the broker's password: %q", b)
		}
	})
	t.Run("inbox", func(t *testing.T) {
		r := benchResult(t, nil, "inbox", "--events", "200", "--rounds", "1")
		rows, _ := r["rows"].([]any)
		if len(rows) == 0 {
			t.Fatalf("inbox reported no rows: %v", r)
		}
		for _, row := range rows {
			row := row.(map[string]any)
			if row["database"] != "sqlite" || row["ratio"].(float64) <= 0 {
				t.Errorf("row %v, want sqlite rows with a positive ratio (no --store, no --sqs-endpoint)", row)
			}
		}
	})
}

// The WAL mode's drain runs from the command at a small size, beside the table mode and the raw
// pglogrepl loop, and leaves no slot behind.
func TestBenchWALDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("drains backlogs on PostgreSQL")
	}
	pgSchema(t, t.Context()) // skip (or fail in CI) when PostgreSQL is unreachable
	r := benchResult(t, nil, "wal-drain", "--store", postgresURL(), "--events", "300", "--rounds", "1")
	for _, k := range []string{"wal_events_per_sec", "table_events_per_sec", "raw_pglogrepl_events_per_sec", "wal_vs_table", "wal_vs_raw", "wal_peak_rss_mib"} {
		if v, ok := r[k].(float64); !ok || v <= 0 {
			t.Errorf("wal-drain %s = %v, want a positive number: %v", k, r[k], r)
		}
	}
}

// The MySQL drain runs from the command at a small size against a mysql:// --store, beside its
// raw SELECT ... SKIP LOCKED + DELETE loop, and reports real measurements.
func TestBenchMySQLDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("drains a backlog on MySQL")
	}
	store, err := mysql.New(t.Context(), mysql.Config{URL: outbox.Secret(mysqlURL()), ConnectTimeout: 5 * time.Second})
	if err != nil {
		outboxtest.NeedService(t, "MySQL or MariaDB at "+mysqlURL(), err)
	}
	_ = store.Close()
	r := benchResult(t, nil, "mysql-drain", "--store", mysqlURL(), "--events", "300", "--rounds", "1")
	for _, k := range []string{"relay_events_per_sec", "raw_select_delete_events_per_sec", "ratio"} {
		if v, ok := r[k].(float64); !ok || v <= 0 {
			t.Errorf("mysql-drain %s = %v, want a positive number: %v", k, r[k], r)
		}
	}
	if r["events"] != float64(300) || r["rounds"] != float64(1) {
		t.Errorf("mysql-drain %v, want 300 events and 1 round", r)
	}
}
