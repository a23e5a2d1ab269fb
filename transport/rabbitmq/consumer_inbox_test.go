package rabbitmq_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/sqlite"
	"github.com/txoutbox/outbox/store/sqlite/inbox"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// Every message published twice, handled by two competing consumers through an inbox, some
// handlers failing after writing their effect on a first delivery: each message takes effect
// exactly once, counted in the consumer's database.
func TestConsumerExactlyOnceWithInbox(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	tr := queueTransport(t, q, false)

	db, err := sql.Open("sqlite", sqlite.DSN(filepath.Join(t.TempDir(), "consumer.db"), 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { _ = db.Close() })
	in, err := inbox.New(db, inbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.EnsureSchema(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE effects (message_id TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}

	const n = 60
	sent := prepared(t, messages(n, "PAYMENT", "")...)
	failFirst := map[string]bool{}
	for i, m := range sent {
		if i%10 == 3 {
			failFirst[m.ID] = true
		}
	}
	// Each message twice: the duplicates a lost ack or a relay's retry would make.
	for range 2 {
		if err := tr.Publish(testCtx(t), sent); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	deliveries, duplicates, failures := 0, 0, 0
	handle := func(ctx context.Context, m *outbox.Message) error {
		dup, err := in.Handle(ctx, "billing", m, func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO effects VALUES (?)", m.ID); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if failFirst[m.ID] {
				delete(failFirst, m.ID)
				failures++
				return errors.New("the payment provider timed out after the effect was written")
			}
			return nil
		})
		mu.Lock()
		deliveries++
		if dup {
			duplicates++
		}
		mu.Unlock()
		return err
	}
	c1 := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q, Concurrency: 3}, handle)
	c2 := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q, Concurrency: 3}, handle)
	startConsumer(t, c1)
	startConsumer(t, c2)
	// Every delivery ends acknowledged: first deliveries once handled, duplicates at once,
	// failed ones when the broker delivers them again.
	waitFor(t, 15*time.Second, "every delivery acknowledged", func() bool { return c1.Stats().Acked+c2.Stats().Acked == 2*n })
	for _, c := range []*rabbitmq.Consumer{c1, c2} {
		if err := c.Stop(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if left := b.count(t, q); left != 0 {
		t.Fatalf("%d messages left in the queue", left)
	}

	rows, err := db.Query("SELECT message_id, count(*) FROM effects GROUP BY message_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	effects := map[string]int{}
	for rows.Next() {
		var id string
		var count int
		if err := rows.Scan(&id, &count); err != nil {
			t.Fatal(err)
		}
		effects[id] = count
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, m := range sent {
		if effects[m.ID] != 1 {
			t.Fatalf("message %s took effect %d times, want once", m.ID, effects[m.ID])
		}
	}
	if len(effects) != n {
		t.Fatalf("%d messages took effect, want %d", len(effects), n)
	}
	mu.Lock()
	defer mu.Unlock()
	if failures != 6 || duplicates != n || deliveries != 2*n+failures {
		t.Fatalf("%d deliveries, %d duplicates absorbed, %d failures: want %d, %d, 6", deliveries, duplicates, failures, 2*n+6, n)
	}
	t.Logf("%d messages, %d deliveries, %d duplicates absorbed, %d handler failures after writing: %d effects, each once",
		n, deliveries, duplicates, failures, len(effects))
}
