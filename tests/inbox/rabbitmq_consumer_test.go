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

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/sqlite"
	sqliteinbox "github.com/txoutbox/outbox/store/sqlite/inbox"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// Every message published twice, handled by two competing consumers through an inbox, some
// handlers failing after writing their effect on a first delivery: each message takes effect
// exactly once, counted in the consumer's database.
func TestRabbitMQConsumerExactlyOnceWithInbox(t *testing.T) {
	q := rabbitQueue(t)
	tr, err := rabbitmq.New(context.Background(), rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(rabbitURL())}, RoutingKey: q}) // the default exchange: straight to the queue
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })

	db, err := sql.Open("sqlite", sqlite.DSN(filepath.Join(t.TempDir(), "consumer.db"), 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { _ = db.Close() })
	in, err := sqliteinbox.New(db, sqliteinbox.Config{})
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
	sent := make([]*outbox.Message, n)
	for i := range sent {
		sent[i] = &outbox.Message{Type: "PAYMENT", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	if err := backend.Prepare(testCtx(t), sent, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
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
	c1 := rabbitConsumer(t, q, handle)
	c2 := rabbitConsumer(t, q, handle)
	// Every delivery ends acknowledged: first deliveries once handled, duplicates at once,
	// failed ones when the broker delivers them again.
	waitFor(t, 15*time.Second, "every delivery acknowledged", func() bool { return c1.Stats().Acked+c2.Stats().Acked == 2*n })
	for _, c := range []*rabbitmq.Consumer{c1, c2} {
		if err := c.Stop(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if left := rabbitCount(t, q); left != 0 {
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

func rabbitURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
}

// rabbitAdmin is a connection to the test broker, closed at cleanup; it skips the test (fails
// it in CI) when the broker does not answer.
func rabbitAdmin(t *testing.T) *amqp.Connection {
	t.Helper()
	conn, err := amqp.DialConfig(rabbitURL(), amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if err != nil {
		outboxtest.NeedService(t, "RabbitMQ at "+rabbitmq.RedactURL(rabbitURL()), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// rabbitQueue declares a durable queue of this test, deleted at cleanup.
func rabbitQueue(t *testing.T) string {
	t.Helper()
	conn := rabbitAdmin(t)
	q := "outbox-test-inbox-" + randomSuffix()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		defer ch.Close()
		_, _ = ch.QueueDelete(q, false, false, false)
	})
	return q
}

// rabbitCount returns how many messages queue q holds.
func rabbitCount(t *testing.T, q string) int {
	t.Helper()
	ch, err := rabbitAdmin(t).Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st.Messages
}

// rabbitConsumer starts a consumer of q, three handlers at once, stopped at cleanup.
func rabbitConsumer(t *testing.T, q string, handle func(context.Context, *outbox.Message) error) *rabbitmq.Consumer {
	t.Helper()
	c, err := rabbitmq.NewConsumer(context.Background(), rabbitmq.ConsumerConfig{Connection: rabbitmq.Connection{URL: rabbitmq.URL(rabbitURL())}, Queue: q, Concurrency: 3, Handler: handle})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return c
}
