package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/cmd/outbox/internal/corebench"
	"github.com/txoutbox/outbox/cmd/outbox/internal/inboxbench"
	"github.com/txoutbox/outbox/cmd/outbox/internal/kafkabench"
	"github.com/txoutbox/outbox/cmd/outbox/internal/mysqlbench"
	"github.com/txoutbox/outbox/cmd/outbox/internal/natsbench"
	"github.com/txoutbox/outbox/cmd/outbox/internal/pgbench"
	"github.com/txoutbox/outbox/cmd/outbox/internal/rabbitmqbench"
	"github.com/txoutbox/outbox/cmd/outbox/internal/sqlitebench"
	"github.com/txoutbox/outbox/cmd/outbox/internal/sqsbench"
	"github.com/txoutbox/outbox/cmd/outbox/internal/storeurl"
	"github.com/txoutbox/outbox/cmd/outbox/internal/walbench"
)

const benchUsage = `Usage: outbox bench [--only LIST] [--store postgres://…|mysql://…] [--sqs-endpoint URL]
                    [--kafka-brokers HOST:PORT,…] [--nats-url URL] [--rabbitmq-url URL] [flags]

Runs the benchmarks and prints one JSON document on stdout; each result carries the raw baseline
it was measured against, in the same run, and the ratio to it. Progress goes to stderr.

Benchmarks (--only picks some, comma-separated):
  core              relay engine: in-memory store -> memory transport vs a raw claim-publish-ack loop
  postgres-write    a one-row business transaction with and without the outbox write
  postgres-drain    a backlog drained by the relay vs a raw DELETE … SKIP LOCKED loop
  postgres-latency  end-to-end latency at a steady rate, vs the write transaction's own
  postgres-ordered  ordered drain of 1000, 10 and 1 keys vs the unordered drain of the same backlog
  sqlite-ordered    the same on SQLite, in a temporary file (no server)
  mysql-write       MySQL/MariaDB (--store mysql://…): a one-row business transaction with and
                    without the outbox write
  mysql-drain       a backlog drained by the relay vs a raw SELECT … FOR UPDATE SKIP LOCKED +
                    DELETE loop with the same concurrency
  mysql-latency     end-to-end latency at 2000 events/s, woken by the in-process signal and by
                    polling only (as writes of another process are found), vs the write's own
  mysql-ordered     ordered drain of 1000, 10 and 1 keys vs the unordered drain of the same backlog
  wal-write         PostgreSQL's WAL mode: a one-row business transaction alone, with a
                    table-mode Add and with a WAL-mode Add
  wal-drain         a backlog of 1M events (--events) written while no relay ran, drained in WAL
                    mode, in table mode and by a raw pglogrepl loop; peak RSS of each
  wal-latency       end-to-end latency at 2000 events/s in WAL mode and in table mode
  wal-large-tx      one transaction of --events (default 100k) events of 32 KiB drained in WAL
                    mode: the reader writes it to the table within its byte bound; peak RSS
                    beside the bound (needs max_slot_wal_keep_size above about 2.2x the payload)
  inbox             a consumer's handler with the inbox vs without it: SQLite (no server), and
                    PostgreSQL with --store, SQS with --sqs-endpoint
  sqs               relay -> SQS vs raw SendMessageBatch with the same client and concurrency
  kafka             relay -> Kafka vs raw franz-go producing the same records; without
                    --kafka-brokers on an in-process fake cluster (kfake)
  nats              relay -> NATS JetStream vs raw async publishes awaiting every PubAck
  rabbitmq          relay -> RabbitMQ vs raw publishes with confirms
By default: core and kafka (on kfake unless --kafka-brokers is set: a few seconds);
postgres-write, postgres-drain and postgres-latency when --store is a postgres URL (mysql-write,
mysql-drain and mysql-latency when it is a mysql URL); sqs with --sqs-endpoint, nats with
--nats-url, rabbitmq with --rabbitmq-url. postgres-ordered, mysql-ordered, inbox and
sqlite-ordered take a minute or more each, so they run only when --only names them, and so do
wal-write, wal-drain, wal-latency and wal-large-tx (they need wal_level = logical; wal-drain and
wal-large-tx take minutes). Each
benchmark works in a schema, table, file, queue, stream or topic of its own and removes it.`

var benchNames = []string{"core", "postgres-write", "postgres-drain", "postgres-latency", "postgres-ordered", "sqlite-ordered", "mysql-write", "mysql-drain", "mysql-latency", "mysql-ordered", "wal-write", "wal-drain", "wal-latency", "wal-large-tx", "inbox", "sqs", "sqs-fifo", "kafka", "nats", "rabbitmq"}

type benchFlags struct {
	only         string
	store        string
	storeKind    storeurl.Kind // of store, once selection has parsed it
	sqsEndpoint  string
	kafkaBrokers string
	natsURL      string
	rabbitmqURL  string
	events       int
	rounds       int
	duration     time.Duration
}

// benchReport is the JSON bench prints.
type benchReport struct {
	GoVersion string                     `json:"go_version"`
	CPUs      int                        `json:"cpus"`
	Started   time.Time                  `json:"started"`
	Seconds   float64                    `json:"seconds"`
	Results   map[string]json.RawMessage `json:"results"`
}

func runBench(ctx context.Context, e *env, args []string) error {
	const cmd = "outbox bench"
	f := newFlags(cmd, benchUsage)
	var b benchFlags
	f.fs.StringVar(&b.only, "only", "", "comma-separated benchmarks to run (default: every one whose server is given)")
	f.fs.StringVar(&b.store, "store", "", "PostgreSQL URL for the postgres benchmarks and inbox, or MySQL/MariaDB URL for the mysql ones")
	f.env("store", "OUTBOX_STORE")
	f.fs.StringVar(&b.sqsEndpoint, "sqs-endpoint", "", "SQS endpoint for the sqs benchmark and inbox, e.g. http://127.0.0.1:4566")
	f.env("sqs-endpoint", "OUTBOX_SQS_ENDPOINT")
	f.fs.StringVar(&b.kafkaBrokers, "kafka-brokers", "", "seed brokers of the Kafka cluster for the kafka benchmark, host:port[,host:port…]")
	f.env("kafka-brokers", "OUTBOX_KAFKA_BROKERS")
	f.fs.StringVar(&b.natsURL, "nats-url", "", "NATS server with JetStream for the nats benchmark, e.g. nats://127.0.0.1:4222")
	f.env("nats-url", "OUTBOX_NATS_URL")
	f.fs.StringVar(&b.rabbitmqURL, "rabbitmq-url", "", "RabbitMQ broker for the rabbitmq benchmark, amqp://USER:PASS@HOST:5672/VHOST")
	f.env("rabbitmq-url", "OUTBOX_RABBITMQ_URL")
	f.fs.IntVar(&b.events, "events", 0, "events per measurement: drains, broker runs, inbox (default: each benchmark's own, 3000 to 100000; wal-drain 1000000)")
	f.fs.IntVar(&b.rounds, "rounds", 0, "rounds of each measurement (default: each benchmark's own)")
	f.fs.DurationVar(&b.duration, "duration", 0, "postgres-latency, mysql-latency and wal-latency: length of the steady load (default 10s)")
	if err := f.parse(e, args, false); err != nil {
		return err
	}
	run, err := b.selection(cmd)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	report := benchReport{GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Started: time.Now().UTC(), Results: map[string]json.RawMessage{}}
	for _, name := range run {
		res, err := withProgress(e.stderr, name, func() (any, error) { return b.run(ctx, name) })
		if err != nil {
			return failed(cmd, fmt.Errorf("%s: %s", name, b.scrub(err.Error())))
		}
		raw, err := json.Marshal(res)
		if err != nil {
			return failed(cmd, err)
		}
		report.Results[name] = raw
	}
	report.Seconds = time.Since(report.Started).Seconds()
	return writeJSON(e.stdout, report)
}

// scrub removes the secrets of every URL given from text.
func (b *benchFlags) scrub(text string) string {
	text = storeurl.Scrub(text, b.store)
	for _, u := range []string{b.natsURL, b.rabbitmqURL} {
		if u != "" {
			text = backend.ScrubSecrets(text, backend.URLRedactor{}.Secrets(u))
		}
	}
	return text
}

// needs says what a benchmark needs that is not given, or "" when it can run.
func (b *benchFlags) needs(name string) string {
	switch {
	case (strings.HasPrefix(name, "postgres") || strings.HasPrefix(name, "wal")) && b.storeKind != storeurl.Postgres:
		return "--store postgres://…"
	case strings.HasPrefix(name, "mysql") && b.storeKind != storeurl.MySQL:
		return "--store mysql://…"
	case strings.HasPrefix(name, "sqs") && b.sqsEndpoint == "":
		return "--sqs-endpoint"
	case name == "nats" && b.natsURL == "":
		return "--nats-url"
	case name == "rabbitmq" && b.rabbitmqURL == "":
		return "--rabbitmq-url"
	}
	return ""
}

// selection returns the benchmarks to run, checking each has what it needs.
func (b *benchFlags) selection(cmd string) ([]string, error) {
	switch {
	case b.events < 0:
		return nil, usagef(cmd, "--events: must not be negative")
	case b.rounds < 0:
		return nil, usagef(cmd, "--rounds: must not be negative")
	case b.duration < 0:
		return nil, usagef(cmd, "--duration: must not be negative")
	}
	if b.store != "" {
		t, err := storeurl.Parse(b.store, storeurl.Options{})
		if err != nil {
			return nil, usagef(cmd, "--store (OUTBOX_STORE): %s", storeurl.Scrub(err.Error(), b.store))
		}
		if t.Kind != storeurl.Postgres && t.Kind != storeurl.MySQL {
			return nil, usagef(cmd, "--store (OUTBOX_STORE): the benchmarks need a postgres:// URL or a mysql:// one, not %s", t.Kind)
		}
		b.storeKind = t.Kind
	}
	if b.sqsEndpoint != "" && !strings.HasPrefix(b.sqsEndpoint, "http://") && !strings.HasPrefix(b.sqsEndpoint, "https://") {
		return nil, usagef(cmd, "--sqs-endpoint (OUTBOX_SQS_ENDPOINT): must start with http:// or https://")
	}
	if _, err := b.brokers(); err != nil {
		return nil, usagef(cmd, "--kafka-brokers (OUTBOX_KAFKA_BROKERS): %v", err)
	}
	if b.natsURL != "" && !strings.HasPrefix(b.natsURL, "nats://") && !strings.HasPrefix(b.natsURL, "tls://") {
		return nil, usagef(cmd, "--nats-url (OUTBOX_NATS_URL): must start with nats:// or tls://")
	}
	if b.rabbitmqURL != "" && !strings.HasPrefix(b.rabbitmqURL, "amqp://") && !strings.HasPrefix(b.rabbitmqURL, "amqps://") {
		return nil, usagef(cmd, "--rabbitmq-url (OUTBOX_RABBITMQ_URL): must start with amqp:// or amqps://")
	}
	var run []string
	if b.only == "" {
		run = []string{"core"}
		switch b.storeKind {
		case storeurl.Postgres:
			run = append(run, "postgres-write", "postgres-drain", "postgres-latency")
		case storeurl.MySQL:
			run = append(run, "mysql-write", "mysql-drain", "mysql-latency")
		}
		for _, name := range []string{"sqs", "sqs-fifo", "kafka", "nats", "rabbitmq"} {
			if b.needs(name) == "" {
				run = append(run, name)
			}
		}
		return run, nil
	}
	for _, name := range strings.Split(b.only, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(benchNames, name) {
			return nil, usagef(cmd, "--only: unknown benchmark %q (want %s)", name, strings.Join(benchNames, ", "))
		}
		if need := b.needs(name); need != "" {
			return nil, usagef(cmd, "--only %s: needs %s", name, need)
		}
		if !slices.Contains(run, name) {
			run = append(run, name)
		}
	}
	return run, nil
}

// brokers splits --kafka-brokers; none means the in-process fake cluster.
func (b *benchFlags) brokers() ([]string, error) {
	if strings.TrimSpace(b.kafkaBrokers) == "" {
		return nil, nil
	}
	var out []string
	for _, s := range strings.Split(b.kafkaBrokers, ",") {
		s = strings.TrimSpace(s)
		if _, _, err := net.SplitHostPort(s); err != nil || s == "" {
			return nil, fmt.Errorf("want host:port[,host:port…]")
		}
		out = append(out, s)
	}
	return out, nil
}

func (b *benchFlags) run(ctx context.Context, name string) (any, error) {
	switch name {
	case "core":
		return corebench.Run(ctx, corebench.Options{Events: b.events, Rounds: b.rounds})
	case "sqs":
		return sqsbench.Run(ctx, sqsbench.Config{Endpoint: b.sqsEndpoint, Events: b.events, Rounds: b.rounds})
	case "sqs-fifo":
		return sqsbench.Run(ctx, sqsbench.Config{Endpoint: b.sqsEndpoint, Events: b.events, Rounds: b.rounds, FIFOGroup: true})
	case "sqlite-ordered":
		return sqlitebench.Ordered(ctx, sqlitebench.Options{Rounds: b.rounds})
	case "kafka":
		brokers, _ := b.brokers() // selection checked them
		return kafkabench.Run(ctx, kafkabench.Config{Brokers: brokers, Events: b.events, Rounds: b.rounds})
	case "nats":
		return natsbench.Run(ctx, natsbench.Config{URL: b.natsURL, Events: b.events, Rounds: b.rounds})
	case "rabbitmq":
		return rabbitmqbench.Run(ctx, rabbitmqbench.Config{URL: b.rabbitmqURL, Events: b.events, Rounds: b.rounds})
	case "inbox":
		dir, err := os.MkdirTemp("", "outbox-bench-inbox-")
		if err != nil {
			return nil, err
		}
		defer func() { _ = os.RemoveAll(dir) }() // a scratch directory; nothing to report
		pgURL := ""
		if b.storeKind == storeurl.Postgres {
			pgURL = b.store
		}
		return inboxbench.Run(ctx, inboxbench.Options{PostgresURL: pgURL, SQLiteDir: dir, SQSEndpoint: b.sqsEndpoint, Messages: b.events, Rounds: b.rounds})
	case "mysql-write":
		return mysqlbench.WriteOverhead(ctx, b.store, mysqlbench.WriteOptions{Rounds: b.rounds})
	case "mysql-drain":
		return mysqlbench.Drain(ctx, b.store, mysqlbench.DrainOptions{Events: b.events, Rounds: b.rounds})
	case "mysql-latency":
		return mysqlbench.Latency(ctx, b.store, mysqlbench.LatencyOptions{Duration: b.duration})
	case "mysql-ordered":
		return mysqlbench.Ordered(ctx, b.store, mysqlbench.OrderedOptions{Rounds: b.rounds})
	}
	pool, err := pgbench.Connect(ctx, b.store, 16)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	switch name {
	case "postgres-write":
		return pgbench.WriteOverhead(ctx, pool, pgbench.WriteOptions{Rounds: b.rounds})
	case "postgres-drain":
		return pgbench.Drain(ctx, pool, pgbench.DrainOptions{Events: b.events, Rounds: b.rounds})
	case "postgres-ordered":
		return pgbench.Ordered(ctx, pool, pgbench.OrderedOptions{Rounds: b.rounds})
	case "wal-write":
		return walbench.Write(ctx, pool, walbench.WriteOptions{Rounds: b.rounds})
	case "wal-drain":
		return walbench.Drain(ctx, pool, walbench.DrainOptions{Events: b.events, Rounds: b.rounds})
	case "wal-latency":
		return walbench.Latency(ctx, pool, walbench.LatencyOptions{Duration: b.duration, Rounds: b.rounds})
	case "wal-large-tx":
		return walbench.LargeTx(ctx, pool, walbench.LargeTxOptions{Events: b.events})
	default:
		return pgbench.Latency(ctx, pool, pgbench.LatencyOptions{Duration: b.duration})
	}
}

// withProgress runs fn, telling w when it starts and ends and, every progressEvery meanwhile,
// that it is still running, so a long benchmark is never mistaken for a hung one.
func withProgress(w io.Writer, name string, fn func() (any, error)) (any, error) {
	began := time.Now()
	fmt.Fprintf(w, "bench: %s: running\n", name)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(w, "bench: %s: still running (%s)\n", name, time.Since(began).Round(time.Second))
			}
		}
	})
	res, err := fn()
	close(done)
	wg.Wait()
	if err == nil {
		fmt.Fprintf(w, "bench: %s: done in %s\n", name, time.Since(began).Round(100*time.Millisecond))
	}
	return res, err
}

var progressEvery = 10 * time.Second
