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

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/sqlite"
	sqliteinbox "github.com/txoutbox/outbox/store/sqlite/inbox"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// Every message reaches the stream twice (the transport's publish, then a copy without
// Nats-Msg-Id, which the duplicate window cannot drop), some handlers fail after writing their
// effect on a first delivery, and two consumers share the durable. The handler wraps the SQLite
// inbox's Handle, so each message's effect row is written once.
func TestNATSConsumerExactlyOnceWithInbox(t *testing.T) {
	js := natsJetStream(t)
	name, prefix := natsStream(t, js)
	const durable = "billing"
	if _, err := js.CreateOrUpdateConsumer(testCtx(t), name, jetstream.ConsumerConfig{
		Durable: durable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
	}); err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite", sqlite.DSN(filepath.Join(t.TempDir(), "consumer.db"), 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
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
	tr, err := outboxnats.New(testCtx(t), outboxnats.Config{Connection: outboxnats.Connection{URL: outboxnats.URL(natsURL())}, Subject: prefix + ".{type}"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	msgs := make([]*outbox.Message, n)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: "CHARGE", Key: []string{"a", "b", "c"}[i%3], Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	if err := backend.Prepare(testCtx(t), msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(testCtx(t), msgs); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs { // the injected duplicates: the same body and headers, a new stream message
		body, err := backend.EncodeEnvelope(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		dup := &natsgo.Msg{Subject: prefix + "." + m.Type, Data: body, Header: natsgo.Header{}}
		dup.Header.Set(outboxnats.HeaderType, m.Type)
		dup.Header.Set(outboxnats.HeaderKey, m.Key)
		if _, err := js.PublishMsg(testCtx(t), dup); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := js.Stream(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(testCtx(t)); err != nil || info.State.Msgs != 2*n {
		t.Fatalf("stream holds %v messages (%v), want %d (each twice)", info, err, 2*n)
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
		cs = append(cs, natsConsumer(t, name, durable, handle))
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

func natsURL() string { return outboxtest.ServiceAddr("OUTBOX_TEST_NATS_URL", "nats://127.0.0.1:4222") }

// natsJetStream connects to the test server, closed at cleanup; it skips the test (fails it in
// CI) when the server does not answer.
func natsJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(natsURL(), natsgo.Timeout(3*time.Second))
	if err != nil {
		outboxtest.NeedService(t, "NATS at "+natsURL(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// natsStream creates a stream of this test capturing "<prefix>.>", deleted at cleanup.
func natsStream(t *testing.T, js jetstream.JetStream) (name, prefix string) {
	t.Helper()
	suffix := randomSuffix()
	name, prefix = "OUTBOX_INBOX_"+suffix, "outboxinbox"+suffix
	if _, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatalf("create stream %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, name)
	})
	return name, prefix
}

// natsConsumer starts a consumer of the durable, four handlers at once, stopped at cleanup.
func natsConsumer(t *testing.T, stream, durable string, handle func(context.Context, *outbox.Message) error) *outboxnats.Consumer {
	t.Helper()
	c, err := outboxnats.NewConsumer(context.Background(), outboxnats.ConsumerConfig{
		Connection: outboxnats.Connection{URL: outboxnats.URL(natsURL())}, Stream: stream, Durable: durable, Concurrency: 4, Handler: handle,
	})
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
