// Command relayproc runs one outbox relay, from a PostgreSQL outbox (or, with -store mysql, a
// MySQL or MariaDB one) to an SQS queue (or, with -transport, a NATS JetStream stream or a
// RabbitMQ queue), as a process of its own: the
// torture tests start several, SIGKILL them at random moments and restart them, as an
// orchestrator would restart a crashed relay.
//
// It stops gracefully on SIGTERM or SIGINT (in-flight batches are published and acknowledged,
// unpublished leases released), prints the relay's counters as one JSON line on stdout and
// exits 0. Until the database answers it keeps trying to connect, as a daemon started during a
// database restart must. With -postgres-mode wal the store streams the messages from the table's
// logical replication slot (the WAL mode) and the relay journals when its reader takes the slot
// and when it no longer holds it, so that the tests know who streamed what.
//
//	relayproc -schema s1 -queue-url http://127.0.0.1:4566/000000000000/q1 [-ordered] [-postgres-mode wal] ...
//	relayproc -schema s1 -transport nats -nats-url nats://127.0.0.1:4222 -nats-subject s1.{type} ...
//	relayproc -schema s1 -transport rabbitmq -rabbitmq-url amqp://guest:guest@127.0.0.1:5672/ -rabbitmq-queue q1 ...
//	relayproc -store mysql -mysql-url mysql://outbox:outbox@127.0.0.1:3306/db1 -queue-url ...
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/mysql"
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

	store, pg, err := connect(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()

	transport, closeTransport, err := newTransport(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeTransport()
	relayStore, j, err := wrapStore(store, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if j != nil {
			_ = j.Close()
		}
	}()
	if cfg.PostgresMode == "wal" {
		watchCtx, stopWatch := context.WithCancel(ctx)
		var watching sync.WaitGroup
		watching.Go(func() { watchSlot(watchCtx, pg, j, log) })
		// Stopped before the store closes (the deferred Close runs after this).
		defer watching.Wait()
		defer stopWatch()
	}

	relay, err := outbox.NewRelay(relayStore, transport, outbox.Config{
		BatchSize:      cfg.BatchSize,
		Concurrency:    cfg.Concurrency,
		PollInterval:   cfg.PollInterval,
		Lease:          cfg.Lease,
		Unordered:      !cfg.Ordered,
		Owner:          cfg.Owner,
		PublishTimeout: cfg.PublishTimeout,
		MaxAttempts:    cfg.MaxAttempts,
		// Short retries, so that a message failed by the fault kit is published again within
		// seconds (an outage charges no attempt and waits for the relay's own probes).
		Backoff: outbox.Backoff{Initial: cfg.BackoffInitial, Max: cfg.BackoffMax},
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
func newTransport(ctx context.Context, cfg Config) (t outbox.Transport, release func(), err error) {
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
	if cfg.PublishDelay > 0 {
		t = delayTransport{t, cfg.PublishDelay}
	}
	return t, release, nil
}

// wrapStore returns the store as the relay sees it: with the control scenario's breakage when
// asked for, and journaled when a journal is set (j, nil otherwise; the caller closes it).
func wrapStore(store outbox.Store, cfg Config) (s outbox.Store, j *journal.Store, err error) {
	s = store
	if cfg.AckBeforePublish {
		s = ackFirstStore{s}
	}
	if cfg.ShortClaimLease {
		s = shortLeaseStore{s}
	}
	if cfg.Journal == "" {
		return s, nil, nil
	}
	j, err = journal.Wrap(s, cfg.Journal)
	if err != nil {
		return nil, nil, fmt.Errorf("relayproc: %w", err)
	}
	return j, j, nil
}

// slotPoll is how often watchSlot asks the store whether its reader holds the slot: a take or a
// loss is journaled at most this late (a take with its exact time, the reader's HeldSince).
const slotPoll = 50 * time.Millisecond

// watchSlot journals (when j is set) and logs each time this relay's reader takes the WAL
// mode's slot and each time it no longer holds it, until ctx ends. A relay that stops cleanly
// journals no loss: what it settled is confirmed or streamed again by nobody.
func watchSlot(ctx context.Context, store *postgres.Store, j *journal.Store, log *zap.Logger) {
	tick := time.NewTicker(slotPoll)
	defer tick.Stop()
	var since time.Time // HeldSince of the hold journaled last; zero while not holding
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st, err := store.SlotStatus(ctx)
		if err != nil {
			continue // the database is down: the reader's state is asked again when it is back
		}
		var events []slotEvent
		switch {
		case st.Holding && st.HeldSince.Equal(since):
		case st.Holding:
			if !since.IsZero() {
				// Lost and taken again between two polls: the loss came before the new take.
				events = append(events, slotEvent{false, st.HeldSince.Add(-time.Millisecond)})
			}
			events = append(events, slotEvent{true, st.HeldSince})
			since = st.HeldSince
		case !since.IsZero():
			events = append(events, slotEvent{false, time.Now()})
			since = time.Time{}
		}
		for _, e := range events {
			log.Info("slot", zap.String("slot", st.Slot), zap.Bool("held", e.held), zap.Time("at", e.at))
			if j != nil {
				if err := j.Slot(e.held, e.at, st.Slot); err != nil {
					log.Error("journal the slot", zap.Error(err))
				}
			}
		}
	}
}

type slotEvent struct {
	held bool
	at   time.Time
}

// closingStore is an outbox.Store the process closes when it ends.
type closingStore interface {
	outbox.Store
	Close() error
}

// connect opens the store of cfg.Store, retrying while the database does not answer (a relay
// restarted during a database restart), until ctx ends. pg is the store again when it is
// PostgreSQL's, for the WAL mode's slot status; nil otherwise.
func connect(ctx context.Context, cfg Config, log *zap.Logger) (store closingStore, pg *postgres.Store, err error) {
	for attempt := 1; ; attempt++ {
		if cfg.Store == "mysql" {
			var my *mysql.Store
			my, err = mysql.New(ctx, mysql.Config{URL: outbox.Secret(cfg.MySQLURL), Table: cfg.MySQLTable, ConnectTimeout: 2 * time.Second})
			if err == nil {
				return my, nil, nil
			}
		} else {
			pgCfg := postgres.Config{URL: cfg.PostgresURL, Schema: cfg.Schema, MaxConns: int32(cfg.Concurrency + 2), ConnectTimeout: 2 * time.Second}
			if cfg.PostgresMode == "wal" {
				pgCfg.WAL = &postgres.WALConfig{StatusInterval: cfg.WALStatusInterval, TakeoverInterval: cfg.WALTakeoverInterval, HeartbeatInterval: cfg.WALHeartbeatInterval, ReplicationURL: cfg.WALReplicationURL}
			}
			pg, err = postgres.New(ctx, pgCfg)
			if err == nil {
				return pg, pg, nil
			}
		}
		var cfgErr *outbox.ConfigError
		if errors.As(err, &cfgErr) {
			return nil, nil, fmt.Errorf("relayproc: %w", err)
		}
		log.Warn("database unavailable; retrying", zap.Int("attempt", attempt), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("relayproc: stopped before the database answered: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
