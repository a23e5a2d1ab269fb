package rabbitmq_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// privateMaxBytes is the private node's max_message_size, far below the transport's default,
// so the broker's own limit can be hit.
const privateMaxBytes = 1 << 20

// The tests that stop, restart or alarm a broker share one private node: starting one takes
// seconds.
func TestPrivateNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private RabbitMQ node")
	}
	n := startNode(t, "max_message_size = 1048576")
	t.Run("RestartMidStream", func(t *testing.T) { testRestartMidStream(t, n, false) })
	t.Run("RestartMidStreamOrdered", func(t *testing.T) { testRestartMidStream(t, n, true) })
	t.Run("Blocked", func(t *testing.T) { testBlocked(t, n) })
	t.Run("BrokerMaxMessageSize", func(t *testing.T) { testBrokerMaxMessageSize(t, n) })
}

// recorder passes publishes through and remembers every message the transport reported
// failed: only those may arrive twice (promise 3: the relay could not know they were taken).
type recorder struct {
	next outbox.Transport
	mu   sync.Mutex
	ids  map[string]bool
}

func (r *recorder) Publish(ctx context.Context, msgs []*outbox.Message) error {
	err := r.next.Publish(ctx, msgs)
	if err == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var be *outbox.BatchError
	for _, m := range msgs {
		if !errors.As(err, &be) || be.Failed[m.ID] != nil {
			r.ids[m.ID] = true
		}
	}
	return err
}

func (r *recorder) failed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.ids))
	for id := range r.ids {
		ids = append(ids, id)
	}
	return ids
}

// The broker restarts while a relay publishes a steady stream: once it is back, every message
// is in the queue — 0 lost, 0 dead — and only messages whose publish was reported failed
// appear twice. Ordered (relay Ordered mode, transport KeepKeyOrder), each key's messages also
// first arrive in write order.
func testRestartMidStream(t *testing.T, n *node, ordered bool) {
	b := n.broker(t)
	q := b.queue(t, nil) // durable, and the messages are persistent: they survive the restart
	store := memstore.New()
	tr := newTransport(t, rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(n.url), ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}, RoutingKey: q, KeepKeyOrder: ordered})
	rec := &recorder{next: tr, ids: map[string]bool{}}
	relay := runRelay(t, store, rec, outbox.Config{
		Unordered: !ordered, Concurrency: 2, BatchSize: 50, PublishTimeout: 5 * time.Second, Lease: 20 * time.Second,
		// Generous, so that the outage cannot exhaust attempts whether or not the relay pauses
		// on outbox.Unavailable instead of charging them.
		MaxAttempts: 100000,
		Backoff:     outbox.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	})

	// A writer adds 100 messages every 20ms (5,000/s) for 3 seconds; the broker goes down
	// after 1 second and comes back a second later.
	var written []*outbox.Message
	writerDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range 150 {
			<-tick.C
			msgs := keyed(100, 50)
			if err := store.Add(context.Background(), msgs...); err != nil {
				writerDone <- err
				return
			}
			written = append(written, msgs...)
		}
		writerDone <- nil
	}()
	flowing := time.Now().Add(20 * time.Second)
	for relay.Stats().Published < 1000 { // the stream flows before the outage
		if time.Now().After(flowing) {
			t.Fatalf("the relay published %d messages in 20s", relay.Stats().Published)
		}
		time.Sleep(10 * time.Millisecond)
	}
	published := relay.Stats().Published
	n.ctlOrFail(t, "stop_app")
	time.Sleep(time.Second) // the outage itself: its length is the scenario, not a wait for a condition
	n.ctlOrFail(t, "start_app")
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := store.Counts(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if c.Pending == 0 {
			if c.Dead != 0 {
				t.Fatalf("%d messages dead after the restart, want 0", c.Dead)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d pending 60s after the restart (stats %+v)", c.Pending, relay.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}

	b = n.broker(t) // the admin connection died with the restart
	total := b.count(t, q)
	got, err := b.receive(testCtx(t), q, total, false)
	if err != nil {
		t.Fatal(err)
	}
	delivered := make([]*outbox.Message, len(got))
	for i, r := range got {
		delivered[i] = r.Msg
	}
	report := outboxtest.CheckDelivery(t, written, delivered, outboxtest.DeliveryCheck{MayRepeat: rec.failed(), Ordered: ordered})
	st := relay.Stats()
	t.Logf("written %d, in the queue %d (%d duplicates of messages reported failed), %d published before the outage; relay stats %+v",
		report.Written, report.Delivered, report.Duplicates, published, st)
	if st.Dead != 0 {
		t.Fatalf("%d dead", st.Dead)
	}
	if len(rec.failed()) == 0 {
		t.Fatal("no publish failed: the broker was not down while the relay published")
	}
}

// While the broker blocks publishers (a memory alarm), Publish fails at once with ErrBlocked,
// as an outage, instead of hanging until its timeout; once the alarm clears it publishes again.
func testBlocked(t *testing.T, n *node) {
	b := n.broker(t)
	q := b.queue(t, nil)
	tr := newTransport(t, rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(n.url)}, RoutingKey: q})
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "warm-up", "")...)); err != nil {
		t.Fatal(err)
	}
	n.ctlOrFail(t, "set_vm_memory_high_watermark", "0.0000001")
	cleared := false
	clear := func() {
		if !cleared {
			cleared = true
			n.ctlOrFail(t, "set_vm_memory_high_watermark", "0.4")
		}
	}
	defer clear()

	// The broker blocks a connection when it next publishes; from then on Publish fails fast.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		start := time.Now()
		err := tr.Publish(ctx, prepared(t, messages(10, "T", "")...))
		took := time.Since(start)
		cancel()
		if errors.Is(err, rabbitmq.ErrBlocked) {
			if !outbox.IsUnavailable(err) || took > 5*time.Second {
				t.Fatalf("blocked publish = %v after %s, want an outage, fast", err, took)
			}
			break
		}
		if err != nil && !outbox.IsUnavailable(err) {
			t.Fatalf("publish under a memory alarm = %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no publish reported the blocked connection; last = %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...)); !errors.Is(err, rabbitmq.ErrBlocked) || time.Since(start) > time.Second {
		t.Fatalf("publish on a blocked connection = %v after %s, want ErrBlocked at once", err, time.Since(start))
	}
	clear()
	waitPublished(t, tr, prepared(t, messages(5, "after", "")...))
}

// A message above the broker's max_message_size (but within MaxMessageBytes) makes the broker
// close the channel: that message fails permanently, the others of the batch are never
// reported published unless confirmed, and the transport adopts the broker's limit.
func testBrokerMaxMessageSize(t *testing.T, n *node) {
	b := n.broker(t)
	q := b.queue(t, nil)
	tr := newTransport(t, rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(n.url), ReconnectMin: time.Millisecond}, RoutingKey: q})
	msgs := prepared(t, messages(5, "T", "")...)
	msgs[2].Payload = []byte(`"` + strings.Repeat("x", 2*privateMaxBytes) + `"`)
	be := batchError(t, tr.Publish(testCtx(t), msgs))
	err := be.Failed[msgs[2].ID]
	if err == nil || !outbox.IsPermanent(err) || !strings.Contains(err.Error(), "max_message_size") {
		t.Fatalf("the oversized message failed with %v, want a permanent error naming max_message_size", err)
	}
	for id, err := range be.Failed {
		if id != msgs[2].ID && !outbox.IsUnavailable(err) {
			t.Fatalf("%s: %v, want an outage (its confirm never came)", id, err)
		}
	}
	// Whatever the transport reported published is in the queue.
	var ok []*outbox.Message
	for _, m := range msgs {
		if be.Failed[m.ID] == nil {
			ok = append(ok, m)
		}
	}
	// The limit is now known: the next oversized message fails before it is sent, and the
	// channel stays open for the others.
	again := prepared(t, messages(3, "T", "")...)
	again[1].Payload = msgs[2].Payload
	var be2 *outbox.BatchError
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := tr.Publish(testCtx(t), again)
		if errors.As(err, &be2) && len(be2.Failed) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second publish = %v, want only the oversized message failed", err)
		}
		time.Sleep(10 * time.Millisecond) // the reconnect backoff
	}
	if err := be2.Failed[again[1].ID]; !outbox.IsPermanent(err) || !strings.Contains(err.Error(), "exceeds MaxMessageBytes (1048576)") {
		t.Fatalf("second oversized message: %v, want the adopted limit", err)
	}
	// The queue holds every message reported published, and may hold those of the first batch
	// whose confirm never came (the broker took them, then closed the channel before
	// confirming), but never the oversized ones.
	got, err := b.receive(testCtx(t), q, b.count(t, q), false)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]bool{}
	for _, r := range got {
		in[r.Msg.ID] = true
	}
	for _, m := range append(ok, again[0], again[2]) {
		if !in[m.ID] {
			t.Errorf("message %s was reported published but is not in the queue", m.ID)
		}
	}
	if in[msgs[2].ID] || in[again[1].ID] {
		t.Error("an oversized message is in the queue")
	}
}
