// Command postgres-brokers writes users and their USER_CREATED events in one PostgreSQL
// transaction each, relays the events to Kafka, NATS JetStream or RabbitMQ, and reads them
// back with that transport's consumer: the whole loop of a service and its subscriber.
//
//	OUTBOX_POSTGRES_URL=postgres://root@127.0.0.1:5432/test go run ./examples/postgres-brokers -transport nats
//	OUTBOX_POSTGRES_URL=... OUTBOX_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/ go run ./examples/postgres-brokers -transport rabbitmq
//	OUTBOX_POSTGRES_URL=... OUTBOX_KAFKA_BROKERS=127.0.0.1:9092 go run ./examples/postgres-brokers -transport kafka
//	OUTBOX_POSTGRES_URL=... go run ./examples/postgres-brokers -transport kafka -kafka-fake   # no Kafka at hand
//
// -kafka-fake starts franz-go's in-process fake cluster (kfake), which speaks the Kafka protocol
// but keeps everything in memory. The example creates the NATS stream (subjects <stream>.>)
// and the RabbitMQ queue it uses when they are missing; a Kafka topic must exist, unless the
// cluster creates topics itself. See config.go for every variable.
//
// In a service, the relay runs all the time (in the service with outboxfx, or beside it with
// `outbox relay --transport ...`) and the consumer lives in another service, its handler
// wrapped in an inbox; here both run until this run's events went round, then stop.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	if err == nil {
		return
	}
	// One line, whatever the driver's error text holds, so it reads well in any log.
	fmt.Fprintln(os.Stderr, "postgres-brokers:", strings.Join(strings.Fields(err.Error()), " "))
	if isMissing(err) {
		os.Exit(2)
	}
	os.Exit(1)
}

// User is the business row; Execute stores it, as JSON, as its event's result.
type User struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// deliveryTimeout bounds the wait for the events to go round; a Kafka consumer group takes a
// few seconds to form.
const deliveryTimeout = 60 * time.Second

func run(ctx context.Context, args []string, getenv func(string) string, w io.Writer) (err error) {
	cfg, err := parseConfig(args, getenv, w)
	if err != nil {
		return err
	}
	store, err := postgres.New(ctx, postgres.Config{URL: cfg.PostgresURL, Schema: cfg.Schema})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, store.Close()) }()
	if err := store.EnsureSchema(ctx); err != nil {
		return err
	}
	users := pgx.Identifier{or(cfg.Schema, "public"), "users"}.Sanitize()
	if _, err := store.Pool().Exec(ctx, "CREATE TABLE IF NOT EXISTS "+users+
		" (id bigserial PRIMARY KEY, name text NOT NULL, email text NOT NULL)"); err != nil {
		return fmt.Errorf("create users table: %w", err)
	}

	// The consumer's side, started first so that it is ready when the events come. The
	// handlers run concurrently; received is theirs and the lines they print go through mu.
	var mu sync.Mutex
	received := map[string]bool{}
	arrived := make(chan struct{}, 1)
	b, err := openBroker(ctx, cfg, func(ctx context.Context, m *outbox.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if !received[m.ID] { // delivery is at least once: a repeat is acknowledged, not counted
			received[m.ID] = true
			_, _ = fmt.Fprintf(w, "consumer got %s %s (key %s): %s\n", m.Type, m.ID, m.Key, m.Result)
		}
		select {
		case arrived <- struct{}{}:
		default:
		}
		return nil // acknowledges the event
	})
	if err != nil {
		return err
	}
	defer b.close()
	if err := b.consumer.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = b.consumer.Stop(context.WithoutCancel(ctx)) }()

	// Each user and its event commit together; the Key keeps one user's events in order.
	var ids []string
	for _, name := range []string{"ada", "grace", "edsger"} {
		email := name + "@example.com"
		event, err := outbox.NewMessage("USER_CREATED", map[string]string{"name": name})
		if err != nil {
			return err
		}
		event.Key = email
		user, err := postgres.Execute(ctx, store, func(ctx context.Context, tx pgx.Tx) (User, error) {
			u := User{Name: name, Email: email}
			err := tx.QueryRow(ctx, "INSERT INTO "+users+" (name, email) VALUES ($1, $2) RETURNING id", u.Name, u.Email).Scan(&u.ID)
			return u, err
		}, event)
		if err != nil {
			return err
		}
		ids = append(ids, event.ID)
		mu.Lock()
		_, _ = fmt.Fprintf(w, "user %d (%s) and event %s committed together\n", user.ID, user.Name, event.ID)
		mu.Unlock()
	}

	relay, err := outbox.NewRelay(store, b.transport, outbox.Config{PollInterval: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	if err := relay.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = relay.Stop(context.WithoutCancel(ctx)) }()

	// Done when the consumer has every event and the outbox has let go of them all (the store
	// deletes a message once its publish is acknowledged).
	deadline := time.NewTimer(deliveryTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var left int
		if err := store.Pool().QueryRow(ctx, "SELECT count(*) FROM "+store.Table()+" WHERE id = ANY($1::uuid[])", ids).Scan(&left); err != nil {
			return err
		}
		mu.Lock()
		got := 0
		for _, id := range ids {
			if received[id] {
				got++
			}
		}
		mu.Unlock()
		if left == 0 && got == len(ids) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			s := relay.Stats()
			return fmt.Errorf("after %v, %d of %d events still in the outbox and %d received (published %d, failed %d, dead %d): is the broker reachable? run `outbox dead list` for dead ones",
				deliveryTimeout, left, len(ids), got, s.Published, s.Failed, s.Dead)
		case <-arrived:
		case <-tick.C:
		}
	}
	mu.Lock()
	defer mu.Unlock()
	_, _ = fmt.Fprintf(w, "relay published %d events to %s and the consumer received them (relay stats: %+v)\n", len(ids), b.where, relay.Stats())
	return nil
}
