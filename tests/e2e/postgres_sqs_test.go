package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/transport/sqs"
)

// written is what a writer committed (or rolled back) for one event.
type written struct {
	result string // the business result Execute stored with the event, as JSON
	writer int
	n      int
}

// ledger is the writers' record of their events, and the consumer's record of what arrived.
type ledger struct {
	mu         sync.Mutex
	committed  map[string]written
	rolledBack map[string]bool
	seen       map[string]int
	bad        []string // received messages that do not match what was written
}

func newLedger() *ledger {
	return &ledger{committed: map[string]written{}, rolledBack: map[string]bool{}, seen: map[string]int{}}
}

// receive records one delivered message and returns how many distinct IDs arrived so far.
func (l *ledger) receive(m *outbox.Message) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[m.ID]++
	if w, ok := l.committed[m.ID]; ok && l.seen[m.ID] == 1 {
		var p struct{ Writer, N int }
		if err := json.Unmarshal(m.Payload, &p); err != nil || p.Writer != w.writer || p.N != w.n ||
			string(m.Result) != w.result || m.Type != "ORDER_PLACED" || m.CreatedAt.IsZero() {
			l.bad = append(l.bad, fmt.Sprintf("%s: type %s payload %s result %s, want writer %d n %d result %s",
				m.ID, m.Type, m.Payload, m.Result, w.writer, w.n, w.result))
		}
	}
	return len(l.seen)
}

// writeEvents runs writers goroutines that each commit perWriter business transactions, each
// inserting an order and writing its ORDER_PLACED event with postgres.Execute, and after every
// fiftieth one a transaction that writes an event and rolls back.
func writeEvents(t *testing.T, ctx context.Context, db *database, l *ledger, writers, perWriter int, key func(w int) string) {
	t.Helper()
	store := db.store
	insert := "INSERT INTO " + pgx.Identifier{db.schema, "orders"}.Sanitize() + " (writer, n) VALUES ($1, $2) RETURNING id"
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for n := range perWriter {
				m := &outbox.Message{Type: "ORDER_PLACED", Key: key(w), Payload: json.RawMessage(fmt.Sprintf(`{"writer":%d,"n":%d}`, w, n))}
				id, err := postgres.Execute(ctx, store, func(ctx context.Context, tx pgx.Tx) (int64, error) {
					var id int64
					err := tx.QueryRow(ctx, insert, w, n).Scan(&id)
					return id, err
				}, m)
				if err != nil {
					errs <- fmt.Errorf("writer %d, event %d: %w", w, n, err)
					return
				}
				l.mu.Lock()
				l.committed[m.ID] = written{result: fmt.Sprint(id), writer: w, n: n}
				l.mu.Unlock()

				if n%50 == 49 {
					ghost, err := rolledBack(ctx, store, insert, w)
					if err != nil {
						errs <- fmt.Errorf("writer %d, rolled-back event: %w", w, err)
						return
					}
					l.mu.Lock()
					l.rolledBack[ghost] = true
					l.mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// rolledBack writes an order and its event in a transaction it then rolls back, and returns
// the event's ID, which must never be published.
func rolledBack(ctx context.Context, store *postgres.Store, insert string, w int) (string, error) {
	tx, err := store.Pool().Begin(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var id int64
	if err := tx.QueryRow(ctx, insert, w, -1).Scan(&id); err != nil {
		return "", err
	}
	m := &outbox.Message{Type: "ORDER_PLACED", Payload: json.RawMessage(`{"ghost":true}`)}
	if err := store.Add(ctx, tx, m); err != nil {
		return "", err
	}
	return m.ID, tx.Rollback(ctx)
}

// startRelay runs a relay from store to a new SQS transport for queueURL, stopped (and checked
// to stop cleanly) when the test ends.
func startRelay(t *testing.T, store *postgres.Store, queueURL string, cfg outbox.Config) *outbox.Relay {
	t.Helper()
	tr, err := sqs.New(testCtx(t), sqs.Config{Connection: sqs.Connection{Endpoint: sqsEndpoint(), Region: "us-east-1", AccessKeyID: "e2e", SecretAccessKey: "e2e"},
		QueueURL: queueURL})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.NewRelay(store, tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := relay.Stop(ctx); err != nil {
			t.Errorf("relay stop: %v", err)
		}
		_ = tr.Close()
	})
	return relay
}

// settle is how long consumers keep receiving after the last expected message, so that a
// duplicate still on its way would be counted.
const settle = 2 * time.Second

// TestPostgresRelaySQS: 8 writers commit 10,000 events in business transactions (and roll back
// 200 more) while the relay publishes to an SQS queue and consumers read it. Every committed
// event arrives, with its payload and business result, and more than once only where the relay
// could not know that a publish succeeded; no rolled-back one arrives.
func TestPostgresRelaySQS(t *testing.T) {
	t.Run("Table", func(t *testing.T) { testPostgresRelaySQS(t, false) })
	t.Run("WAL", func(t *testing.T) { testPostgresRelaySQS(t, true) })
}

func testPostgresRelaySQS(t *testing.T, wal bool) {
	const writers, perWriter = 8, 1250
	const total = writers * perWriter
	db := newDatabase(t, wal)
	store := db.store
	b := newBroker(t)
	queue := b.createQueue(t, false)
	relay := startRelay(t, store, queue, outbox.Config{BatchSize: 100, Concurrency: 2, PollInterval: 200 * time.Millisecond})
	ctx := testCtx(t)
	l := newLedger()

	var unique atomic.Int64
	var doneAt atomic.Int64 // unix nanos when every committed event had arrived
	consumed := make(chan error, 1)
	var stats *consumeStats
	go func() {
		var err error
		stats, err = b.consume(ctx, queue, 4, func(m *outbox.Message, _ types.Message) {
			unique.Store(int64(l.receive(m)))
		}, func() bool {
			if unique.Load() < total {
				return false
			}
			doneAt.CompareAndSwap(0, time.Now().UnixNano())
			return time.Since(time.Unix(0, doneAt.Load())) > settle
		})
		consumed <- err
	}()

	start := time.Now()
	writeEvents(t, ctx, db, l, writers, perWriter, func(int) string { return "" })
	wrote := time.Since(start)
	if err := <-consumed; err != nil {
		t.Fatalf("consumer: %v (%d of %d distinct events arrived)", err, unique.Load(), total)
	}
	took := time.Since(start) - settle
	t.Logf("consumers survived %d failed receives and retried %d deletes", stats.receiveErrors.Load(), stats.deleteRetries.Load())

	l.mu.Lock()
	defer l.mu.Unlock()
	duplicates, missing, ghosts, unknown := 0, 0, 0, 0
	for id, n := range l.seen {
		switch {
		case l.rolledBack[id]:
			ghosts++
		case l.committed[id] == (written{}):
			unknown++
		}
		duplicates += n - 1
	}
	for id := range l.committed {
		if l.seen[id] == 0 {
			missing++
		}
	}
	st := relay.Stats()
	t.Logf("%d events committed by %d writers in %v (%d rolled back); all received after %v: duplicates=%d missing=%d rolled-back-received=%d unknown=%d; relay stats %+v",
		len(l.committed), writers, wrote.Round(time.Millisecond), len(l.rolledBack), took.Round(time.Millisecond), duplicates, missing, ghosts, unknown, st)
	// Promise 3: a duplicate only where the relay could not know a publish succeeded. Every such
	// publish was released or failed (a lost SendMessageBatch reply is an outage, released and
	// sent again), so they bound the duplicates; a run without any must have none.
	if doubt := int(st.Released + st.Failed); duplicates > doubt {
		t.Errorf("%d duplicates, but only %d publishes whose outcome the relay could not know", duplicates, doubt)
	}
	if len(l.committed) != total || missing != 0 || ghosts != 0 || unknown != 0 {
		t.Errorf("committed=%d (want %d) missing=%d rolled-back-received=%d unknown=%d; want all zero",
			len(l.committed), total, missing, ghosts, unknown)
	}
	for _, bad := range l.bad[:min(len(l.bad), 5)] {
		t.Errorf("wrong content: %s", bad)
	}
	counts, err := store.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Pending != 0 || counts.Dead != 0 || st.Dead != 0 {
		t.Errorf("store counts %+v, relay dead %d: want nothing pending or dead", counts, st.Dead)
	}
}

// TestPostgresRelaySQSFIFOOrdered: with the relay in ordered mode and a FIFO queue, each Key's
// events arrive in the order they were committed, in the Key's message group, once each.
func TestPostgresRelaySQSFIFOOrdered(t *testing.T) {
	t.Run("Table", func(t *testing.T) { testPostgresRelaySQSFIFOOrdered(t, false) })
	t.Run("WAL", func(t *testing.T) { testPostgresRelaySQSFIFOOrdered(t, true) })
}

func testPostgresRelaySQSFIFOOrdered(t *testing.T, wal bool) {
	const writers, perWriter = 4, 150
	db := newDatabase(t, wal)
	b := newBroker(t)
	queue := b.createQueue(t, true)
	startRelay(t, db.store, queue, outbox.Config{BatchSize: 100, Concurrency: 2, PollInterval: 200 * time.Millisecond})
	ctx := testCtx(t)
	l := newLedger()
	key := func(w int) string { return fmt.Sprintf("customer-%d", w) }

	var mu sync.Mutex
	order := map[string][]int{} // key -> payload n in arrival order
	var groupErrs []string
	var unique atomic.Int64
	var doneAt atomic.Int64
	consumed := make(chan error, 1)
	var stats *consumeStats
	go func() {
		// One consumer, so arrival order is the queue's order.
		var err error
		stats, err = b.consume(ctx, queue, 1, func(m *outbox.Message, raw types.Message) {
			var p struct{ N int }
			_ = json.Unmarshal(m.Payload, &p)
			mu.Lock()
			order[m.Key] = append(order[m.Key], p.N)
			if g := raw.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)]; g != m.Key {
				groupErrs = append(groupErrs, fmt.Sprintf("%s in group %q", m.Key, g))
			}
			mu.Unlock()
			unique.Store(int64(l.receive(m)))
		}, func() bool {
			if unique.Load() < writers*perWriter {
				return false
			}
			doneAt.CompareAndSwap(0, time.Now().UnixNano())
			return time.Since(time.Unix(0, doneAt.Load())) > settle
		})
		consumed <- err
	}()

	writeEvents(t, ctx, db, l, writers, perWriter, key)
	if err := <-consumed; err != nil {
		t.Fatalf("consumer: %v (%d of %d arrived)", err, unique.Load(), writers*perWriter)
	}
	t.Logf("consumer survived %d failed receives and retried %d deletes", stats.receiveErrors.Load(), stats.deleteRetries.Load())
	mu.Lock()
	defer mu.Unlock()
	for w := range writers {
		got := order[key(w)]
		if len(got) != perWriter {
			t.Errorf("%s: %d events arrived, want %d", key(w), len(got), perWriter)
			continue
		}
		for i, n := range got {
			if n != i {
				t.Errorf("%s: event %d arrived in position %d (order %v...)", key(w), n, i, got[:min(len(got), i+3)])
				break
			}
		}
	}
	if len(groupErrs) > 0 {
		t.Errorf("messages outside their key's group: %v", groupErrs[:min(len(groupErrs), 5)])
	}
	if len(l.bad) > 0 {
		t.Errorf("wrong content: %v", l.bad[:min(len(l.bad), 5)])
	}
}
