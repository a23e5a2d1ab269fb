// Command quickstart shows the transactional outbox end to end, with nothing to install: a
// SQLite database in a temporary directory, a users table, and a relay that publishes the
// USER_CREATED events to an in-process broker.
//
//	go run ./examples/quickstart
//
// Each user and its event are written in one transaction, so an event exists exactly when its
// user does. The relay then delivers every committed event at least once, in order per key.
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/store/sqlite"
	"github.com/txoutbox/outbox/transport/memory"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// User is the business row. Execute puts it, as JSON, in its event's "result".
type User struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

func run(ctx context.Context, w io.Writer) (err error) {
	// The relay publishes from its own goroutines, so every line goes through one lock.
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = fmt.Fprintf(w, format+"\n", args...)
	}

	// 1. A database of our own, removed at the end.
	dir, err := os.MkdirTemp("", "outbox-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir) //nolint:errcheck // a temporary directory left behind harms nothing

	store, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(dir, "app.db")})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, store.Close()) }()
	// The outbox table (the origin package's ensureOutboxTable), then our business table.
	if err := store.EnsureSchema(ctx); err != nil {
		return err
	}
	_, err = store.DB().ExecContext(ctx, `CREATE TABLE users (
		id    INTEGER PRIMARY KEY,
		name  TEXT NOT NULL,
		email TEXT NOT NULL UNIQUE)`)
	if err != nil {
		return err
	}

	// 2. A broker and a consumer. In production this is SQS (transport/sqs); the consumer
	// receives the same JSON envelope either way.
	broker := memory.New()
	broker.Subscribe(func(_ context.Context, m *outbox.Message) error {
		envelope, err := backend.EncodeEnvelope(nil, m)
		if err != nil {
			return err
		}
		say("delivered: %s", envelope)
		return nil
	})

	// 3. The relay: claims committed events, publishes them, acknowledges them. The store wakes
	// it on every commit, so nothing waits for the poll interval.
	relay, err := outbox.NewRelay(store, broker, outbox.Config{})
	if err != nil {
		return err
	}
	if err := relay.Start(ctx); err != nil {
		return err
	}

	// 4. The business operation and its event, in one transaction (the origin package's
	// executeWithOutbox). The event's key orders events of the same user.
	users := []User{
		{Name: "Ada Lovelace", Email: "ada@example.com"},
		{Name: "Grace Hopper", Email: "grace@example.com"},
		{Name: "Edsger Dijkstra", Email: "edsger@example.com"},
		{Name: "Ada Again", Email: "ada@example.com"}, // duplicate email: the insert fails
	}
	created := 0
	for _, u := range users {
		event, err := outbox.NewMessage("USER_CREATED", map[string]string{"name": u.Name, "email": u.Email})
		if err != nil {
			return err
		}
		event.Key = u.Email
		row, err := sqlite.Execute(ctx, store, func(ctx context.Context, tx *sql.Tx) (User, error) {
			err := tx.QueryRowContext(ctx, `INSERT INTO users (name, email) VALUES (?, ?) RETURNING id`,
				u.Name, u.Email).Scan(&u.ID)
			return u, err
		}, event)
		if err != nil {
			// Rolled back: neither the user nor its event exists, so nothing is published.
			say("not created: %s: %v", u.Email, err)
			continue
		}
		created++
		say("created user %d (%s) with event %s", row.ID, row.Email, event.ID)
	}

	// 5. Wait for the consumer to see every committed event, then stop the relay gracefully:
	// it finishes in-flight publishes and acknowledges them before returning.
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	waitErr := broker.WaitFor(waitCtx, created)
	stopCtx, cancelStop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancelStop()
	if err := relay.Stop(stopCtx); err != nil {
		return err
	}
	if waitErr != nil {
		return waitErr
	}

	s := relay.Stats()
	say("relay stats: claimed=%d published=%d failed=%d dead=%d batches=%d last_lag=%v",
		s.Claimed, s.Published, s.Failed, s.Dead, s.Batches, s.LastLag.Round(time.Millisecond))
	counts, err := store.Counts(ctx)
	if err != nil {
		return err
	}
	say("outbox: pending=%d dead=%d (delivered events are deleted; set KeepDelivered to keep them)",
		counts.Pending, counts.Dead)
	return nil
}
