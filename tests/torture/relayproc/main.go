// Command relayproc runs one outbox relay, from a PostgreSQL outbox to an SQS queue (or, with
// -transport, a NATS JetStream stream or a RabbitMQ queue), as a process of its own: the
// torture tests start several, SIGKILL them at random moments and restart them, as an
// orchestrator would restart a crashed relay.
//
// It stops gracefully on SIGTERM or SIGINT (in-flight batches are published and acknowledged,
// unpublished leases released), prints the relay's counters as one JSON line on stdout and
// exits 0. Until PostgreSQL answers it keeps trying to connect, as a daemon started during a
// database restart must.
//
//	relayproc -schema s1 -queue-url http://127.0.0.1:4566/000000000000/q1 [-ordered] ...
//	relayproc -schema s1 -transport nats -nats-url nats://127.0.0.1:4222 -nats-subject s1.{type} ...
//	relayproc -schema s1 -transport rabbitmq -rabbitmq-url amqp://guest:guest@127.0.0.1:5672/ -rabbitmq-queue q1 ...
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/txoutbox/outbox/core"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/tests/torture/journal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run is the whole process, minus os.Exit, so that it reads top to bottom.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	level, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("relayproc: log-level: %w", err)
	}
	logCfg := zap.NewProductionConfig()
	logCfg.Level = zap.NewAtomicLevelAt(level)
	logCfg.OutputPaths = []string{"stderr"}
	logCfg.Sampling = nil
	log, err := logCfg.Build()
	if err != nil {
		return fmt.Errorf("relayproc: logger: %w", err)
	}
	defer func() { _ = log.Sync() }()

	store, err := connect(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()

	transport, closeTransport, err := newTransport(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeTransport()
	relayStore, closeJournal, err := wrapStore(store, cfg)
	if err != nil {
		return err
	}
	defer closeJournal()

	relay, err := core.NewRelay(relayStore, transport, core.Config{
		BatchSize:      cfg.BatchSize,
		Concurrency:    cfg.Concurrency,
		PollInterval:   cfg.PollInterval,
		Lease:          cfg.Lease,
		Ordered:        cfg.Ordered,
		Owner:          cfg.Owner,
		PublishTimeout: cfg.PublishTimeout,
		MaxAttempts:    cfg.MaxAttempts,
		// Short retries, so that a message failed by the fault kit is published again within
		// seconds (an outage charges no attempt and waits for the relay's own probes).
		Backoff: core.Backoff{Initial: cfg.BackoffInitial, Max: cfg.BackoffMax},
		Logger:  log,
	})
	if err != nil {
		return fmt.Errorf("relayproc: %w", err)
	}
	if err := relay.Run(ctx); err != nil {
		return fmt.Errorf("relayproc: stop: %w", err)
	}
	stats, err := json.Marshal(relay.Stats())
	if err != nil {
		return fmt.Errorf("relayproc: stats: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", stats)
	return err
}

// newTransport builds the transport (SQS, NATS or RabbitMQ), wrapped with the fault kit when
// failure rates are set and with the control scenario's breakage when asked for. release
// closes its connections.
func newTransport(ctx context.Context, cfg Config) (t core.Transport, release func(), err error) {
	base, release, err := brokerTransport(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	t = base
	if cfg.PartialFailureRate > 0 || cfg.CallFailureRate > 0 {
		faulty := outboxtest.NewFaultyTransport(base, cfg.FaultSeed)
		faulty.SetPartialRate(cfg.PartialFailureRate)
		faulty.SetFailRate(cfg.CallFailureRate)
		t = faulty
	}
	if cfg.PublishTwice {
		t = twiceTransport{t}
	}
	if cfg.ReverseBatches {
		t = reverseTransport{t}
	}
	return t, release, nil
}

// wrapStore returns the store as the relay sees it: with the control scenario's breakage when
// asked for, and journaled when a journal is set. release closes the journal.
func wrapStore(store *postgres.Store, cfg Config) (s core.Store, release func(), err error) {
	s = store
	if cfg.AckBeforePublish {
		s = ackFirstStore{s}
	}
	if cfg.ShortClaimLease {
		s = shortLeaseStore{s}
	}
	if cfg.Journal == "" {
		return s, func() {}, nil
	}
	j, err := journal.Wrap(s, cfg.Journal)
	if err != nil {
		return nil, nil, fmt.Errorf("relayproc: %w", err)
	}
	return j, func() { _ = j.Close() }, nil
}

// connect opens the store, retrying while PostgreSQL does not answer (a relay restarted during
// a database restart), until ctx ends.
func connect(ctx context.Context, cfg Config, log *zap.Logger) (*postgres.Store, error) {
	for attempt := 1; ; attempt++ {
		store, err := postgres.New(ctx, postgres.Config{URL: cfg.PostgresURL, Schema: cfg.Schema, MaxConns: int32(cfg.Concurrency + 2), ConnectTimeout: 2 * time.Second})
		if err == nil {
			return store, nil
		}
		var cfgErr *core.ConfigError
		if errors.As(err, &cfgErr) {
			return nil, fmt.Errorf("relayproc: %w", err)
		}
		log.Warn("database unavailable; retrying", zap.Int("attempt", attempt), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("relayproc: stopped before the database answered: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
