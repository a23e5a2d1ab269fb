package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/txoutbox/outbox"
)

// Config is what one relay process runs with. Every field has a flag of the same name in
// kebab case (-postgres-url, -schema, ...); the zero value of a field means its default.
type Config struct {
	// Store is the outbox's database: postgres (store/postgres) or mysql (store/mysql, MySQL or
	// MariaDB). Default postgres.
	Store string
	// PostgresURL is the database holding the outbox (postgres store). Default
	// OUTBOX_TEST_POSTGRES_URL, or postgres://root@127.0.0.1:5432/test.
	PostgresURL string
	// Schema holds the outbox table (postgres store). Required with postgres: every torture
	// scenario has its own.
	Schema string
	// MySQLURL is the database holding the outbox (mysql store), mysql://user:pass@host:port/db.
	// Default OUTBOX_TEST_MYSQL_URL, or mysql://outbox:outbox@127.0.0.1:3306/outbox_test.
	MySQLURL string
	// MySQLTable is the outbox table's name (mysql store). Default outbox.
	MySQLTable string
	// PostgresMode is the store's mode: table (claims from the outbox table) or wal (messages
	// streamed from the table's logical replication slot, postgres.WALConfig). Default table.
	PostgresMode string
	// WALStatusInterval, WALTakeoverInterval and WALHeartbeatInterval are the WAL mode's
	// StatusInterval, TakeoverInterval and HeartbeatInterval. Default 200ms, 500ms and 2s:
	// shorter than the store's defaults, so that a kill streams again little, a standby takes
	// the slot over within a second and an idle slot advances within a scenario's drain.
	WALStatusInterval, WALTakeoverInterval, WALHeartbeatInterval time.Duration
	// WALReplicationURL is where the WAL mode's replication connection goes, when not to
	// PostgresURL: the wal-replication-cut scenario points it at a proxy it cuts.
	WALReplicationURL string
	// Transport is the broker: sqs, nats or rabbitmq. Default sqs.
	Transport string
	// QueueURL is the SQS queue the relay publishes to; a .fifo URL is a FIFO queue. Required
	// with sqs.
	QueueURL string
	// Endpoint is the SQS server. Default OUTBOX_TEST_SQS_ENDPOINT, or http://127.0.0.1:4566.
	Endpoint string
	// NATSURL is the NATS server (nats transport). Default OUTBOX_TEST_NATS_URL, or
	// nats://127.0.0.1:4222.
	NATSURL string
	// NATSSubject is the subject template ({type}) of the nats transport. Required with nats.
	NATSSubject string
	// NATSStream is the stream every message must land in (nats transport). Default none.
	NATSStream string
	// RabbitMQURL is the broker of the rabbitmq transport. Required with rabbitmq.
	RabbitMQURL string
	// RabbitMQQueue is the queue the rabbitmq transport publishes to, through the default
	// exchange. Required with rabbitmq.
	RabbitMQQueue string
	// Ordered runs the relay in ordered mode (per-Key order). Default false.
	Ordered bool
	// Owner names the relay's leases. Default relayproc-<pid>.
	Owner string
	// Lease is how long a claim reserves its messages. Default 3s: a killed relay's messages
	// are published again by another within seconds.
	Lease time.Duration
	// BatchSize is the relay's claim size. Default 50.
	BatchSize int
	// Concurrency is the relay's number of claim-publish-ack cycles in flight. Default 2.
	Concurrency int
	// PollInterval is the relay's fallback poll. Default 250ms.
	PollInterval time.Duration
	// PublishTimeout bounds one publish; a publish that runs out of it counts as an outage.
	// Default 0: the relay's default (Lease/2).
	PublishTimeout time.Duration
	// MaxAttempts is how many failed publishes make a message dead. Default 0: the relay's
	// default (25).
	MaxAttempts int
	// BackoffInitial and BackoffMax space the retries of a failed message. Default 250ms and
	// 4s: a message failed by the fault kit is published again within seconds.
	BackoffInitial, BackoffMax time.Duration
	// MaxMessageBytes is the transport's size limit; a larger message fails permanently and
	// is dead-lettered. Default 16 KiB, well below the store's 256 KiB, so oversized (poison)
	// events are accepted by the store and refused by the transport.
	MaxMessageBytes int
	// PartialFailureRate is the fraction of messages of every publish that the fault kit fails
	// (outboxtest.FaultyTransport); 0 publishes through the SQS transport alone. Default 0.
	PartialFailureRate float64
	// CallFailureRate is the fraction of publish calls that the fault kit fails whole. Default 0.
	CallFailureRate float64
	// FaultSeed seeds the fault kit. Default: derived from the process ID.
	FaultSeed uint64
	// Journal is a file the relay appends its claims and settlements to (package journal), so
	// that a test can tell which messages a killed relay held. Default none.
	Journal string
	// AckBeforePublish breaks the relay on purpose: each batch is acknowledged when claimed,
	// before it is published, so a failed publish loses its events. Only the torture suite's
	// control scenario sets it, to prove its checker catches a loss. Default false.
	AckBeforePublish bool
	// PublishTwice breaks the relay on purpose: every batch is published twice. Control
	// scenario only. Default false.
	PublishTwice bool
	// ReverseBatches breaks the relay on purpose: every batch is published in reverse order.
	// Control scenario only. Default false.
	ReverseBatches bool
	// PublishDelay breaks the relay on purpose when set with AckBeforePublish: every publish
	// waits this long first, so that acknowledged batches are in flight most of the time and a
	// kill or the slot's confirmed position catches them. Control scenario only. Default 0.
	PublishDelay time.Duration
	// ShortClaimLease breaks the relay on purpose: its claims lease messages for 1ms whatever
	// Lease says. Control scenario only. Default false.
	ShortClaimLease bool
	// LogLevel is the zap level of the relay's logs on stderr. Default warn.
	LogLevel string
}

func (c Config) withDefaults() Config {
	if c.Store == "" {
		c.Store = "postgres"
	}
	if c.MySQLURL == "" {
		c.MySQLURL = envOr("OUTBOX_TEST_MYSQL_URL", "mysql://outbox:outbox@127.0.0.1:3306/outbox_test")
	}
	if c.MySQLTable == "" {
		c.MySQLTable = "outbox"
	}
	if c.PostgresURL == "" {
		c.PostgresURL = envOr("OUTBOX_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
	}
	if c.Transport == "" {
		c.Transport = "sqs"
	}
	if c.PostgresMode == "" {
		c.PostgresMode = "table"
	}
	if c.WALStatusInterval == 0 {
		c.WALStatusInterval = 200 * time.Millisecond
	}
	if c.WALTakeoverInterval == 0 {
		c.WALTakeoverInterval = 500 * time.Millisecond
	}
	if c.WALHeartbeatInterval == 0 {
		c.WALHeartbeatInterval = 2 * time.Second
	}
	if c.NATSURL == "" {
		c.NATSURL = envOr("OUTBOX_TEST_NATS_URL", "nats://127.0.0.1:4222")
	}
	if c.Endpoint == "" {
		c.Endpoint = envOr("OUTBOX_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566")
	}
	if c.Owner == "" {
		c.Owner = fmt.Sprintf("relayproc-%d", os.Getpid())
	}
	if c.Lease == 0 {
		c.Lease = 3 * time.Second
	}
	if c.BatchSize == 0 {
		c.BatchSize = 50
	}
	if c.Concurrency == 0 {
		c.Concurrency = 2
	}
	if c.PollInterval == 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.BackoffInitial == 0 {
		c.BackoffInitial = 250 * time.Millisecond
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 4 * time.Second
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 16 << 10
	}
	if c.FaultSeed == 0 {
		c.FaultSeed = uint64(os.Getpid())
	}
	if c.LogLevel == "" {
		c.LogLevel = "warn"
	}
	return c
}

// Validate names the first wrong field by its flag. Components validate their own part again
// (postgres.Config, sqs.Config, outbox.Config); this catches what they would report less clearly.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "relayproc", Field: field, Problem: problem}
	}
	switch {
	case c.Store != "" && c.Store != "postgres" && c.Store != "mysql":
		return bad("store", fmt.Sprintf("%q is not one of postgres, mysql", c.Store))
	case c.Store != "mysql" && c.Schema == "":
		return bad("schema", "is empty")
	case c.Store == "mysql" && c.PostgresMode == "wal":
		return bad("postgres-mode", "wal needs -store postgres")
	case c.Transport != "" && c.Transport != "sqs" && c.Transport != "nats" && c.Transport != "rabbitmq":
		return bad("transport", fmt.Sprintf("%q is not one of sqs, nats, rabbitmq", c.Transport))
	case c.PostgresMode != "" && c.PostgresMode != "table" && c.PostgresMode != "wal":
		return bad("postgres-mode", fmt.Sprintf("%q is not one of table, wal", c.PostgresMode))
	case c.WALStatusInterval < 0:
		return bad("wal-status-interval", "is negative")
	case c.WALTakeoverInterval < 0:
		return bad("wal-takeover-interval", "is negative")
	case c.WALHeartbeatInterval < 0:
		return bad("wal-heartbeat-interval", "is negative")
	case c.PublishDelay < 0:
		return bad("publish-delay", "is negative")
	case (c.Transport == "" || c.Transport == "sqs") && c.QueueURL == "":
		return bad("queue-url", "is empty")
	case c.Transport == "nats" && c.NATSSubject == "":
		return bad("nats-subject", "is empty")
	case c.Transport == "rabbitmq" && c.RabbitMQURL == "":
		return bad("rabbitmq-url", "is empty")
	case c.Transport == "rabbitmq" && c.RabbitMQQueue == "":
		return bad("rabbitmq-queue", "is empty")
	case c.Lease < 0:
		return bad("lease", "is negative")
	case c.BatchSize < 0:
		return bad("batch-size", "is negative")
	case c.Concurrency < 0:
		return bad("concurrency", "is negative")
	case c.PollInterval < 0:
		return bad("poll-interval", "is negative")
	case c.PublishTimeout < 0:
		return bad("publish-timeout", "is negative")
	case c.MaxAttempts < 0:
		return bad("max-attempts", "is negative")
	case c.BackoffInitial < 0:
		return bad("backoff-initial", "is negative")
	case c.BackoffMax < 0:
		return bad("backoff-max", "is negative")
	case c.MaxMessageBytes < 0:
		return bad("max-message-bytes", "is negative")
	case c.PartialFailureRate < 0 || c.PartialFailureRate >= 1:
		return bad("partial-failure-rate", fmt.Sprintf("%v is not in [0, 1)", c.PartialFailureRate))
	case c.CallFailureRate < 0 || c.CallFailureRate >= 1:
		return bad("call-failure-rate", fmt.Sprintf("%v is not in [0, 1)", c.CallFailureRate))
	}
	for _, u := range []struct{ field, value string }{{"queue-url", c.QueueURL}, {"endpoint", c.Endpoint}} {
		if u.value == "" {
			continue
		}
		p, err := url.Parse(u.value)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return bad(u.field, "is not an http(s) URL")
		}
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return bad("log-level", fmt.Sprintf("%q is not one of debug, info, warn, error", c.LogLevel))
	}
	return nil
}

// parseFlags reads a Config from the command line. It never prints the database URL, which may
// hold a password.
func parseFlags(args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("relayproc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Store, "store", "", "postgres or mysql (default postgres)")
	fs.StringVar(&c.MySQLURL, "mysql-url", "", "MySQL or MariaDB URL, mysql://user:pass@host:port/db (default $OUTBOX_TEST_MYSQL_URL or mysql://outbox:outbox@127.0.0.1:3306/outbox_test)")
	fs.StringVar(&c.MySQLTable, "mysql-table", "", "outbox table of the mysql store (default outbox)")
	fs.StringVar(&c.PostgresURL, "postgres-url", "", "PostgreSQL connection string (default $OUTBOX_TEST_POSTGRES_URL or postgres://root@127.0.0.1:5432/test)")
	fs.StringVar(&c.Schema, "schema", "", "schema of the outbox table (required with postgres)")
	fs.StringVar(&c.PostgresMode, "postgres-mode", "", "table or wal (default table)")
	fs.DurationVar(&c.WALStatusInterval, "wal-status-interval", 0, "WAL mode: how often the slot's confirmed position is reported (default 200ms)")
	fs.DurationVar(&c.WALTakeoverInterval, "wal-takeover-interval", 0, "WAL mode: how often a standby tries to take the slot (default 500ms)")
	fs.StringVar(&c.WALReplicationURL, "wal-replication-url", "", "WAL mode: the replication connection's server (default -postgres-url)")
	fs.DurationVar(&c.WALHeartbeatInterval, "wal-heartbeat-interval", 0, "WAL mode: heartbeat after this long without a streamed transaction (default 2s)")
	fs.StringVar(&c.Transport, "transport", "", "sqs, nats or rabbitmq (default sqs)")
	fs.StringVar(&c.QueueURL, "queue-url", "", "SQS queue URL (required with sqs; .fifo for a FIFO queue)")
	fs.StringVar(&c.Endpoint, "endpoint", "", "SQS endpoint (default $OUTBOX_TEST_SQS_ENDPOINT or http://127.0.0.1:4566)")
	fs.StringVar(&c.NATSURL, "nats-url", "", "NATS server (default $OUTBOX_TEST_NATS_URL or nats://127.0.0.1:4222)")
	fs.StringVar(&c.NATSSubject, "nats-subject", "", "subject template, {type} replaced by the message type (required with nats)")
	fs.StringVar(&c.NATSStream, "nats-stream", "", "stream every message must land in (nats)")
	fs.StringVar(&c.RabbitMQURL, "rabbitmq-url", "", "RabbitMQ broker, amqp://user:password@host:port/vhost (required with rabbitmq)")
	fs.StringVar(&c.RabbitMQQueue, "rabbitmq-queue", "", "queue published to through the default exchange (required with rabbitmq)")
	fs.BoolVar(&c.Ordered, "ordered", false, "ordered mode: per-Key order")
	fs.StringVar(&c.Owner, "owner", "", "lease owner (default host-pid-random)")
	fs.DurationVar(&c.Lease, "lease", 0, "claim lease (default 3s)")
	fs.IntVar(&c.BatchSize, "batch-size", 0, "claim size (default 50)")
	fs.IntVar(&c.Concurrency, "concurrency", 0, "cycles in flight (default 2)")
	fs.DurationVar(&c.PollInterval, "poll-interval", 0, "fallback poll (default 250ms)")
	fs.DurationVar(&c.PublishTimeout, "publish-timeout", 0, "bound on one publish (default: the relay's, Lease/2)")
	fs.IntVar(&c.MaxAttempts, "max-attempts", 0, "failed publishes that make a message dead (default: the relay's, 25)")
	fs.DurationVar(&c.BackoffInitial, "backoff-initial", 0, "first retry delay of a failed message (default 250ms)")
	fs.DurationVar(&c.BackoffMax, "backoff-max", 0, "longest retry delay of a failed message (default 4s)")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", 0, "transport message size limit (default 16384)")
	fs.Float64Var(&c.PartialFailureRate, "partial-failure-rate", 0, "fraction of messages the fault kit fails in each publish")
	fs.Float64Var(&c.CallFailureRate, "call-failure-rate", 0, "fraction of publish calls the fault kit fails whole")
	fs.Uint64Var(&c.FaultSeed, "fault-seed", 0, "fault kit seed (default: the pid)")
	fs.StringVar(&c.Journal, "journal", "", "file to append claims and settlements to")
	fs.BoolVar(&c.AckBeforePublish, "ack-before-publish", false, "deliberately broken relay for the control scenario: acknowledge before publishing")
	fs.BoolVar(&c.PublishTwice, "publish-twice", false, "deliberately broken relay for the control scenario: publish every batch twice")
	fs.BoolVar(&c.ReverseBatches, "reverse-batches", false, "deliberately broken relay for the control scenario: publish every batch in reverse order")
	fs.DurationVar(&c.PublishDelay, "publish-delay", 0, "deliberately broken relay for the control scenario: wait this long before every publish")
	fs.BoolVar(&c.ShortClaimLease, "short-claim-lease", false, "deliberately broken relay for the control scenario: lease claims for 1ms")
	fs.StringVar(&c.LogLevel, "log-level", "", "debug, info, warn or error (default warn)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, errors.New("relayproc: unexpected arguments after the flags")
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c.withDefaults(), nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
