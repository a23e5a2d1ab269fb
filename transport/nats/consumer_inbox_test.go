package nats_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/store/sqlite"
	"github.com/txoutbox/outbox/store/sqlite/inbox"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
	_ "modernc.org/sqlite" // the "sqlite" driver
)

// TestConsumerExactlyOnce: every message reaches the stream twice (the transport's publish,
// then a copy without Nats-Msg-Id, which the duplicate window cannot drop), some handlers fail
// after writing their effect on a first delivery, and two consumers share the durable. The
// handler wraps inbox.Handle, so each message's effect row is written once.
func TestConsumerExactlyOnce(t *testing.T) {
	s := needServer(t)
	st := s.createStream(t, nil)
	durable := st.durable(t, nil)

	db, err := sql.Open("sqlite", sqlite.DSN(filepath.Join(t.TempDir(), "consumer.db"), 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
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
	tr := newTransport(t, outboxnats.Config{Subject: st.subject()})
	msgs := prepared(t, messages(n, "CHARGE", "")...)
	for i, m := range msgs {
		m.Key = []string{"a", "b", "c"}[i%3]
	}
	if err := tr.Publish(testCtx(t), msgs); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs { // the injected duplicates: the same body and headers, a new stream message
		body, err := backend.EncodeEnvelope(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		dup := &natsgo.Msg{Subject: st.prefix + "." + m.Type, Data: body, Header: natsgo.Header{}}
		dup.Header.Set(outboxnats.HeaderType, m.Type)
		dup.Header.Set(outboxnats.HeaderKey, m.Key)
		if _, err := s.js.PublishMsg(testCtx(t), dup); err != nil {
			t.Fatal(err)
		}
	}
	if got := st.count(t); got != 2*n {
		t.Fatalf("stream holds %d messages, want %d (each twice)", got, 2*n)
	}

	var mu sync.Mutex
	var deliveries, duplicates, failures int
	failOnce := map[string]bool{}
	for _, m := range msgs[:n/6] {
		failOnce[m.ID] = true
	}
	handle := func(ctx context.Context, m *outbox.Message) error {
		dup, err := in.Handle(ctx, "billing", m, func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO effects VALUES (?)", m.ID); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if failOnce[m.ID] {
				delete(failOnce, m.ID)
				failures++
				return errors.New("failed after writing the effect") // rolled back with the record
			}
			return nil
		})
		mu.Lock()
		defer mu.Unlock()
		deliveries++
		if dup {
			duplicates++
		}
		return err
	}
	var cs []*outboxnats.Consumer
	for range 2 {
		cs = append(cs, newConsumer(t, outboxnats.ConsumerConfig{Stream: st.name, Durable: durable, Concurrency: 4}, handle))
	}
	waitFor(t, 15*time.Second, "every stream message acked", func() bool {
		var acked int64
		for _, c := range cs {
			acked += c.Stats().Acked
		}
		return acked == 2*n
	})

	var rows, distinct int
	if err := db.QueryRow("SELECT count(*), count(DISTINCT message_id) FROM effects").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d messages, %d stream messages, %d deliveries, %d duplicates absorbed, %d handler failures, %d effects",
		n, 2*n, deliveries, duplicates, failures, rows)
	if rows != n || distinct != n {
		t.Fatalf("%d effect rows for %d distinct messages, want %d, each once", rows, distinct, n)
	}
	if duplicates != n || failures != n/6 || deliveries != 2*n+n/6 {
		t.Fatalf("%d deliveries, %d duplicates, %d failures; want %d, %d, %d", deliveries, duplicates, failures, 2*n+n/6, n, n/6)
	}
}
