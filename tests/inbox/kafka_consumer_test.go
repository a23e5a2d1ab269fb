package inbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/store/sqlite"
	sqliteinbox "github.com/txoutbox/outbox/store/sqlite/inbox"
	"github.com/txoutbox/outbox/transport/kafka"
)

// Every message published twice to Kafka (an in-process kfake cluster), and the first attempt
// of every fifth failing after its effect was written (rolled back with the inbox record): a
// Kafka consumer whose handler wraps the SQLite inbox's Handle takes each effect once.
func TestKafkaConsumerExactlyOnceWithInbox(t *testing.T) {
	const topic = "inbox-e2e"
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	conn := kafka.Connection{Brokers: fake.ListenAddrs()}
	ctx := testCtx(t)
	tr, err := kafka.New(ctx, kafka.Config{Connection: conn, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })

	db, err := sql.Open("sqlite", sqlite.DSN(filepath.Join(t.TempDir(), "consumer.db"), 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(1)
	in, err := sqliteinbox.New(db, sqliteinbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE effects (message_id TEXT NOT NULL, n INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}

	const n = 60
	var msgs []*outbox.Message
	for i := range n {
		msgs = append(msgs, &outbox.Message{Type: "T", Key: fmt.Sprintf("k%d", i%6), Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
	}
	if err := backend.Prepare(ctx, msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	failOnce := map[string]bool{}
	for i, m := range msgs {
		if i%5 == 0 {
			failOnce[m.ID] = true
		}
	}
	// Each message twice, as a relay does after a lost acknowledgement.
	for range 2 {
		if err := tr.Publish(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	duplicates := 0
	cons, err := kafka.NewConsumer(ctx, kafka.ConsumerConfig{
		Connection: conn, Topics: []string{topic}, Group: "billing", Concurrency: 3,
		RetryBackoff: 20 * time.Millisecond, FetchMaxWait: 100 * time.Millisecond,
		Handler: func(ctx context.Context, m *outbox.Message) error {
			dup, err := in.Handle(ctx, "billing", m, func(ctx context.Context, tx *sql.Tx) error {
				var p struct{ N int }
				if err := json.Unmarshal(m.Payload, &p); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO effects (message_id, n) VALUES (?, ?)`, m.ID, p.N); err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				if failOnce[m.ID] {
					delete(failOnce, m.ID)
					return errors.New("injected failure after the effect")
				}
				return nil
			})
			if dup {
				mu.Lock()
				duplicates++
				mu.Unlock()
			}
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cons.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := cons.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	waitFor(t, 20*time.Second, "every record handled", func() bool { return cons.Stats().Handled >= 2*n })

	var rows, distinct int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT message_id) FROM effects`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != n || distinct != n {
		t.Errorf("%d effect rows for %d messages (%d distinct), want %d", rows, n, distinct, n)
	}
	s := cons.Stats()
	mu.Lock()
	defer mu.Unlock()
	if duplicates != n || s.Failed != n/5 {
		t.Errorf("%d duplicates (want %d), stats %+v (want %d failures)", duplicates, n, s, n/5)
	}
}
