// Command postgres-sqs is the origin package's PostgreSQL usage example in Go: create the outbox
// table, write users and their USER_CREATED events in one transaction each with Execute (the
// origin's executeWithOutbox), and run a relay that publishes the events to SQS.
//
//	OUTBOX_POSTGRES_URL=postgres://root@127.0.0.1:5432/test \
//	OUTBOX_SQS_QUEUE_URL=users OUTBOX_SQS_ENDPOINT=http://127.0.0.1:4566 OUTBOX_SQS_REGION=us-east-1 \
//	OUTBOX_SQS_ACCESS_KEY_ID=test OUTBOX_SQS_SECRET_ACCESS_KEY=test \
//	go run ./examples/postgres-sqs
//
// In a service, the relay runs all the time (in the service with outboxfx, or beside it with
// `outbox relay`); here it runs until this run's events are delivered, then stops.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/transport/sqs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Getenv, os.Stdout)
	if err == nil {
		return
	}
	// One line, whatever the driver's error text holds, so it reads well in any log.
	fmt.Fprintln(os.Stderr, "postgres-sqs:", strings.Join(strings.Fields(err.Error()), " "))
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

func run(ctx context.Context, getenv func(string) string, w io.Writer) (err error) {
	cfg, err := configFromEnv(getenv)
	if err != nil {
		return err
	}
	// new OutboxService({ db: postgres, ... }) and ensureOutboxTable().
	store, err := postgres.New(ctx, postgres.Config{URL: cfg.PostgresURL, Schema: cfg.Schema})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, store.Close()) }() // the origin's close()
	if err := store.EnsureSchema(ctx); err != nil {
		return err
	}
	users := pgx.Identifier{orPublic(cfg.Schema), "users"}.Sanitize()
	if _, err := store.Pool().Exec(ctx, "CREATE TABLE IF NOT EXISTS "+users+
		" (id bigserial PRIMARY KEY, name text NOT NULL, email text NOT NULL)"); err != nil {
		return fmt.Errorf("create users table: %w", err)
	}

	// executeWithOutbox(users, insert, payload, 'USER_CREATED'), three times.
	var ids []string
	for _, name := range []string{"ada", "grace", "edsger"} {
		event, err := outbox.NewMessage("USER_CREATED", map[string]string{"name": name})
		if err != nil {
			return err
		}
		user, err := postgres.Execute(ctx, store, func(ctx context.Context, tx pgx.Tx) (User, error) {
			u := User{Name: name, Email: name + "@example.com"}
			err := tx.QueryRow(ctx, "INSERT INTO "+users+" (name, email) VALUES ($1, $2) RETURNING id", u.Name, u.Email).Scan(&u.ID)
			return u, err
		}, event)
		if err != nil {
			return err
		}
		ids = append(ids, event.ID)
		_, _ = fmt.Fprintf(w, "user %d (%s) and event %s committed together\n", user.ID, user.Name, event.ID)
	}

	transport, err := sqs.New(ctx, sqs.Config{
		Connection: sqs.Connection{Region: cfg.Region, Endpoint: cfg.Endpoint, AccessKeyID: outbox.Secret(cfg.AccessKeyID), SecretAccessKey: outbox.Secret(cfg.SecretKey)},
		QueueURL:   cfg.QueueURL,
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, transport.Close()) }()
	return relayUntilDelivered(ctx, store, transport, ids, w)
}

// relayUntilDelivered runs a relay until the messages with ids have left the outbox (the store
// deletes a message when its publish is acknowledged), or gives up after 30 seconds.
func relayUntilDelivered(ctx context.Context, store *postgres.Store, transport outbox.Transport, ids []string, w io.Writer) error {
	relay, err := outbox.NewRelay(store, transport, outbox.Config{PollInterval: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	if err := relay.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = relay.Stop(context.WithoutCancel(ctx)) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		var left int
		err := store.Pool().QueryRow(ctx, "SELECT count(*) FROM "+store.Table()+" WHERE id = ANY($1::uuid[])", ids).Scan(&left)
		if err != nil {
			return err
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			s := relay.Stats()
			return fmt.Errorf("%d of %d events still undelivered after 30s (published %d, failed %d, dead %d): is the queue reachable? run `outbox dead list` for dead ones",
				left, len(ids), s.Published, s.Failed, s.Dead)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	_, _ = fmt.Fprintf(w, "relay published %d events to SQS (stats: %+v)\n", len(ids), relay.Stats())
	return nil
}

func orPublic(schema string) string {
	if schema == "" {
		return "public"
	}
	return schema
}
