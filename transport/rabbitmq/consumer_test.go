package rabbitmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// newConsumer builds a consumer of queue on the test broker (unless cfg names another URL),
// stopped at cleanup.
func newConsumer(t *testing.T, cfg rabbitmq.ConsumerConfig, handle func(context.Context, *outbox.Message) error) *rabbitmq.Consumer {
	t.Helper()
	if cfg.URL == "" && cfg.Conn == nil {
		cfg.URL = rabbitmq.URL(brokerURL())
	}
	cfg.Handler = handle
	c, err := rabbitmq.NewConsumer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewConsumer(%v): %v", cfg, err)
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

func startConsumer(t *testing.T, c *rabbitmq.Consumer) {
	t.Helper()
	if err := c.Start(testCtx(t)); err != nil {
		t.Fatalf("start: %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// collector records what a handler received.
type collector struct {
	mu   sync.Mutex
	msgs map[string]*outbox.Message
	seen []string
}

func newCollector() *collector { return &collector{msgs: map[string]*outbox.Message{}} }

func (c *collector) handle(_ context.Context, m *outbox.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs[m.ID] = m
	c.seen = append(c.seen, m.ID)
	return nil
}

func (c *collector) len() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.msgs) }

// queueTransport publishes to queue through the default exchange.
func queueTransport(t *testing.T, queue string, raw bool) *rabbitmq.Transport {
	return newTransport(t, rabbitmq.Config{RoutingKey: queue, RawPayload: raw})
}

func TestConsumerRoundTrip(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	tr := queueTransport(t, q, false)
	sent := prepared(t, messages(25, "ORDER_PLACED", "customer-7")...)
	for _, m := range sent {
		m.Headers = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "acme"}
		m.Result = json.RawMessage(`{"ok":true}`)
	}
	if err := tr.Publish(testCtx(t), sent); err != nil {
		t.Fatal(err)
	}
	got := newCollector()
	c := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q, Concurrency: 4}, got.handle)
	startConsumer(t, c)
	waitFor(t, 15*time.Second, "25 acks", func() bool { return c.Stats().Acked == 25 })
	for _, want := range sent {
		m := got.msgs[want.ID]
		switch {
		case m == nil:
			t.Fatalf("message %s not received", want.ID)
		case m.Type != want.Type || m.Key != want.Key || string(m.Payload) != string(want.Payload) || string(m.Result) != string(want.Result):
			t.Fatalf("received %+v, sent %+v", m, want)
		case !m.CreatedAt.Equal(want.CreatedAt):
			t.Fatalf("CreatedAt %v, sent %v", m.CreatedAt, want.CreatedAt)
		case m.Headers["traceparent"] != want.Headers["traceparent"] || m.Headers["tenant"] != "acme" || len(m.Headers) != 2:
			t.Fatalf("headers %v, sent %v (the outbox.* headers are not headers)", m.Headers, want.Headers)
		}
	}
	if err := c.Stop(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Received != 25 || st.Handled != 25 || st.Failed != 0 || st.InFlight != 0 || st.AckErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n := b.count(t, q); n != 0 {
		t.Fatalf("%d messages left in the queue after every one was acknowledged", n)
	}
	if err := c.Start(testCtx(t)); !errors.Is(err, outbox.ErrConsumerStarted) {
		t.Fatalf("second Start: %v", err)
	}
}

func TestConsumerRawPayload(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	tr := queueTransport(t, q, true)
	sent := prepared(t, messages(3, "RAW", "k")...)
	if err := tr.Publish(testCtx(t), sent); err != nil {
		t.Fatal(err)
	}
	got := newCollector()
	c := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q, RawPayload: true}, got.handle)
	startConsumer(t, c)
	waitFor(t, 15*time.Second, "3 acks", func() bool { return c.Stats().Acked == 3 })
	for _, want := range sent {
		m := got.msgs[want.ID]
		if m == nil || m.Type != "RAW" || m.Key != "k" || string(m.Payload) != string(want.Payload) || len(m.Headers) != 0 ||
			!m.CreatedAt.Equal(want.CreatedAt.Truncate(time.Second)) {
			t.Fatalf("received %+v for %+v", m, want)
		}
	}
}

// On a quorum queue, x-delivery-limit bounds the redeliveries of a message whose handler always
// fails, and the message then goes to the dead-letter exchange.
func TestConsumerDeliveryLimitDeadLetters(t *testing.T) {
	b := needBroker(t)
	dlq := b.queue(t, nil)
	q := b.queue(t, amqp.Table{"x-queue-type": "quorum", "x-delivery-limit": 2, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
	tr := queueTransport(t, q, false)
	sent := prepared(t, messages(1, "POISON", "")...)
	if err := tr.Publish(testCtx(t), sent); err != nil {
		t.Fatal(err)
	}
	c := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q}, func(context.Context, *outbox.Message) error {
		return errors.New("always fails")
	})
	startConsumer(t, c)
	if d := deadLettered(t, b, dlq); d.MessageId != sent[0].ID {
		t.Fatalf("dead-lettered %s, want %s", d.MessageId, sent[0].ID)
	}
	// The first delivery and two redeliveries (the limit), then the broker dead-letters it.
	if st := c.Stats(); st.Failed != 3 || st.Handled != 0 {
		t.Fatalf("stats %+v, want 3 failed deliveries", st)
	}
}

// A body that is no envelope is rejected without requeue: to the dead-letter exchange at once.
func TestConsumerMalformed(t *testing.T) {
	b := needBroker(t)
	dlq := b.queue(t, nil)
	q := b.queue(t, amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
	if err := b.channel(t).PublishWithContext(testCtx(t), "", q, false, false, amqp.Publishing{Body: []byte("not an envelope")}); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	c := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q}, func(context.Context, *outbox.Message) error { calls.Add(1); return nil })
	startConsumer(t, c)
	if d := deadLettered(t, b, dlq); string(d.Body) != "not an envelope" {
		t.Fatalf("dead-lettered %q", d.Body)
	}
	// Counted once the reject is sent, which can be after the broker already routed it.
	waitFor(t, 15*time.Second, "the reject counted", func() bool { return c.Stats().Rejected >= 1 })
	if st := c.Stats(); calls.Load() != 0 || st.Malformed != 1 || st.Rejected != 1 || st.Acked != 0 {
		t.Fatalf("calls %d, stats %+v", calls.Load(), st)
	}
}

// Concurrency handlers run at once and never more; two consumers on one queue share its
// messages, each handled once.
func TestConsumerConcurrent(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	tr := queueTransport(t, q, false)
	const n = 60
	sent := prepared(t, messages(n, "T", "")...)
	if err := tr.Publish(testCtx(t), sent); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	handled := map[string]int{}
	var running, peak atomic.Int64
	full := make(chan struct{})
	var fullOnce sync.Once
	handle := func(limit int64) func(context.Context, *outbox.Message) error {
		return func(ctx context.Context, m *outbox.Message) error {
			now := running.Add(1)
			defer running.Add(-1)
			for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
			}
			if now == limit {
				fullOnce.Do(func() { close(full) })
			}
			// Hold the first handlers until every slot of both consumers is taken.
			select {
			case <-full:
			case <-ctx.Done():
				return ctx.Err()
			}
			mu.Lock()
			handled[m.ID]++
			mu.Unlock()
			return nil
		}
	}
	// Four handlers each: eight at once in all.
	c1 := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q, Concurrency: 4}, handle(8))
	c2 := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q, Concurrency: 4}, handle(8))
	startConsumer(t, c1)
	startConsumer(t, c2)
	waitFor(t, 15*time.Second, "every message acknowledged", func() bool { return c1.Stats().Acked+c2.Stats().Acked == n })
	if p := peak.Load(); p != 8 {
		t.Fatalf("at most %d handlers ran at once, want 8 (4 per consumer)", p)
	}
	if c1.Stats().Handled == 0 || c2.Stats().Handled == 0 {
		t.Fatalf("one consumer got nothing: %+v, %+v", c1.Stats(), c2.Stats())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range sent {
		if handled[m.ID] != 1 {
			t.Fatalf("message %s handled %d times", m.ID, handled[m.ID])
		}
	}
}

// Stop waits for a handler in flight and its ack; the messages prefetched behind it go back to
// the queue.
func TestConsumerStopWaitsForHandler(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	tr := queueTransport(t, q, false)
	if err := tr.Publish(testCtx(t), prepared(t, messages(3, "T", "")...)); err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	c := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q, Concurrency: 1}, func(ctx context.Context, m *outbox.Message) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		return nil
	})
	startConsumer(t, c)
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(testCtx(t)) }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a handler ran", err)
	case <-time.After(100 * time.Millisecond): // Stop must still be waiting: nothing else can be observed
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st := c.Stats(); st.Acked != 1 || calls.Load() != 1 || st.InFlight != 0 {
		t.Fatalf("calls %d, stats %+v: want the handler in flight acknowledged and no other handled", calls.Load(), st)
	}
	waitFor(t, 10*time.Second, "the two others back in the queue", func() bool { return b.count(t, q) == 2 })
}

// Start fails when the queue does not exist, as an outage.
func TestConsumerStartMissingQueue(t *testing.T) {
	needBroker(t)
	c := newConsumer(t, rabbitmq.ConsumerConfig{Queue: name(t, "missing")}, newCollector().handle)
	err := c.Start(testCtx(t))
	if !outbox.IsUnavailable(err) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Start on a missing queue: %v", err)
	}
}

func TestConsumerConfig(t *testing.T) {
	const password = "s3cr3t-pw"
	base := rabbitmq.ConsumerConfig{Connection: rabbitmq.Connection{URL: rabbitmq.URL("amqp://user:" + password + "@rabbit:5672/vhost")}, Queue: "orders", Handler: newCollector().handle}
	cases := []struct {
		edit  func(*rabbitmq.ConsumerConfig)
		field string
	}{
		{func(c *rabbitmq.ConsumerConfig) { c.URL = "" }, "URL"},
		{func(c *rabbitmq.ConsumerConfig) { c.URL = "http://rabbit" }, "URL"},
		{func(c *rabbitmq.ConsumerConfig) { c.Handler = nil }, "Handler"},
		{func(c *rabbitmq.ConsumerConfig) { c.Queue = "" }, "Queue"},
		{func(c *rabbitmq.ConsumerConfig) { c.Queue = strings.Repeat("q", 256) }, "Queue"},
		{func(c *rabbitmq.ConsumerConfig) { c.Concurrency = -1 }, "Concurrency"},
		{func(c *rabbitmq.ConsumerConfig) { c.Concurrency = 65536 }, "Concurrency"},
		{func(c *rabbitmq.ConsumerConfig) { c.HandlerTimeout = -1 }, "HandlerTimeout"},
		{func(c *rabbitmq.ConsumerConfig) { c.ReconnectMin, c.ReconnectMax = time.Second, time.Millisecond }, "ReconnectMax"},
		{func(c *rabbitmq.ConsumerConfig) { c.KeyPassword = "x" }, "KeyPassword"},
	}
	for _, tc := range cases {
		cfg := base
		tc.edit(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate(%v) = %v, want a config error naming %s", cfg, err, tc.field)
		}
	}
	if err := base.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	noHandler := base
	noHandler.Handler = nil
	if _, err := rabbitmq.NewConsumer(context.Background(), noHandler); !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), "Handler") {
		t.Fatalf("NewConsumer without a handler: %v", err)
	}
	secret := base
	secret.KeyPassword = "key-" + password
	js, err := json.Marshal(secret)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rabbitmq.NewConsumer(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprintf("%#v", secret), fmt.Sprintf("%v", secret), fmt.Sprintf("%+v", secret), string(js), c.String()} {
		if strings.Contains(s, password) {
			t.Fatalf("config text shows the secret: %s", s)
		}
		if !strings.Contains(s, "orders") {
			t.Fatalf("config text lost the queue: %s", s)
		}
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}
}

// brokerHost is the test broker's host:port.
func brokerHost(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// deadLettered waits for the one message of queue dlq and returns it, with the x-death header
// the broker adds.
func deadLettered(t *testing.T, b *broker, dlq string) amqp.Delivery {
	t.Helper()
	ch := b.channel(t)
	deliveries, err := ch.Consume(dlq, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-deliveries:
		if _, ok := d.Headers["x-death"]; !ok {
			t.Fatalf("a message in the dead-letter queue without x-death: %+v", d.Headers)
		}
		return d
	case <-time.After(15 * time.Second):
		t.Fatal("nothing reached the dead-letter queue in 15s")
	}
	return amqp.Delivery{}
}

// A handler past HandlerTimeout has its context cancelled and its message requeued.
func TestConsumerHandlerTimeout(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	tr := queueTransport(t, q, false)
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...)); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	c := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q, HandlerTimeout: 50 * time.Millisecond}, func(ctx context.Context, m *outbox.Message) error {
		if calls.Add(1) == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	startConsumer(t, c)
	waitFor(t, 15*time.Second, "the second delivery acknowledged and the requeue counted", func() bool {
		return c.Stats().Acked == 1 && c.Stats().Requeued >= 1
	})
	if st := c.Stats(); st.Failed != 1 || st.Requeued != 1 || calls.Load() != 2 {
		t.Fatalf("calls %d, stats %+v", calls.Load(), st)
	}
}

// Run consumes until its context ends, then stops cleanly.
func TestConsumerRun(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	tr := queueTransport(t, q, false)
	if err := tr.Publish(testCtx(t), prepared(t, messages(3, "T", "")...)); err != nil {
		t.Fatal(err)
	}
	got := newCollector()
	c := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q}, got.handle)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	waitFor(t, 15*time.Second, "3 acks", func() bool { return c.Stats().Acked == 3 })
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// Start fails as an outage when the broker refuses the credentials, and never repeats the
// password.
func TestConsumerStartRefused(t *testing.T) {
	needBroker(t)
	const password = "not-the-password-5f1c"
	u, err := url.Parse(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("outbox-no-such-user", password)
	c := newConsumer(t, rabbitmq.ConsumerConfig{Connection: rabbitmq.Connection{URL: rabbitmq.URL(u.String())}, Queue: "orders"}, newCollector().handle)
	err = c.Start(testCtx(t))
	if !outbox.IsUnavailable(err) || strings.Contains(err.Error(), password) {
		t.Fatalf("Start with a wrong password: %v", err)
	}
}

// A consumer stopped abruptly, its Stop's deadline passing while handlers run and others ack,
// hands back everything it held: the messages whose handlers it cancelled and those the
// prefetch brought but no handler took. The next consumer handles every one. Twenty rounds,
// each on a queue of its own, so the stop lands in different states.
func TestConsumerAbruptStopRedelivers(t *testing.T) {
	b := needBroker(t)
	for round := range 20 {
		q := b.queue(t, nil)
		sent := prepared(t, messages(12, "T", "")...)
		if err := queueTransport(t, q, false).Publish(testCtx(t), sent); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		done := map[string]bool{}
		blocked := make(chan struct{}, len(sent))
		a := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q, Concurrency: 4}, func(ctx context.Context, m *outbox.Message) error {
			var p struct{ N int }
			if err := json.Unmarshal(m.Payload, &p); err != nil {
				return err
			}
			if p.N%2 == 0 { // slower than the stop's deadline
				blocked <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			}
			mu.Lock()
			done[m.ID] = true
			mu.Unlock()
			return nil
		})
		startConsumer(t, a)
		for range 2 {
			select {
			case <-blocked:
			case <-time.After(15 * time.Second):
				t.Fatalf("round %d: the slow handlers were not called: %+v", round, a.Stats())
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_ = a.Stop(ctx) // past its deadline: the handlers still ran
		cancel()
		acked := a.Stats().Acked

		bc := newConsumer(t, rabbitmq.ConsumerConfig{Queue: q, Concurrency: 4}, func(_ context.Context, m *outbox.Message) error {
			mu.Lock()
			done[m.ID] = true
			mu.Unlock()
			return nil
		})
		startConsumer(t, bc)
		waitFor(t, 15*time.Second, fmt.Sprintf("round %d: every message handled by A or B", round), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(done) == len(sent) && acked+bc.Stats().Acked >= int64(len(sent))
		})
		if err := bc.Stop(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if n := b.count(t, q); n != 0 {
			t.Fatalf("round %d: %d messages left in the queue; A %+v, B %+v", round, n, a.Stats(), bc.Stats())
		}
	}
}

// The broker stops answering (its bytes dropped by a proxy) while the consumer stops: Stop does
// not wait for a cancel-ok that never comes. It returns within the cancel and close bounds, the
// connection is closed, and the broker hands every message to the next consumer.
func TestConsumerStopWithoutCancelOk(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	sent := prepared(t, messages(6, "T", "")...)
	if err := queueTransport(t, q, false).Publish(testCtx(t), sent); err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, brokerHost(t))
	entered := make(chan struct{}, len(sent))
	a := newConsumer(t, rabbitmq.ConsumerConfig{Connection: rabbitmq.Connection{URL: rabbitmq.URL(p.url(t, brokerURL()))}, Queue: q, Concurrency: 2}, func(ctx context.Context, m *outbox.Message) error {
		entered <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	startConsumer(t, a)
	for range 2 {
		select {
		case <-entered:
		case <-time.After(15 * time.Second):
			t.Fatalf("the handlers were not called: %+v", a.Stats())
		}
	}
	p.muted.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	_ = a.Stop(ctx) // past its deadline: the handlers still ran
	if took, bound := time.Since(began), rabbitmq.DefaultCancelTimeout+5*time.Second; took > bound {
		t.Fatalf("Stop took %v against a silent broker, want at most %v", took, bound)
	}

	got := newCollector()
	startConsumer(t, newConsumer(t, rabbitmq.ConsumerConfig{Queue: q}, got.handle))
	waitFor(t, 15*time.Second, "every message handled by the next consumer", func() bool { return got.len() == len(sent) })
}
