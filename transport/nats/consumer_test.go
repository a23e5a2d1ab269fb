package nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// durable creates a durable pull consumer with explicit acks on the stream (deleted with it);
// edit may adjust its config.
func (st *stream) durable(t testing.TB, edit func(*jetstream.ConsumerConfig)) string {
	t.Helper()
	cfg := jetstream.ConsumerConfig{Durable: "outbox-consumer", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	if _, err := st.js.CreateOrUpdateConsumer(testCtx(t), cfg); err != nil {
		t.Fatalf("create consumer %s: %v", cfg.Durable, err)
	}
	return cfg.Durable
}

// pending returns the durable consumer's messages not yet delivered and delivered but not acked.
func (st *stream) pending(t testing.TB, durable string) (notDelivered uint64, ackPending int) {
	t.Helper()
	cons, err := st.js.Consumer(testCtx(t), durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.NumPending, info.NumAckPending
}

// newConsumer builds a consumer of the durable on the shared server, stopped at cleanup.
func newConsumer(t *testing.T, cfg outboxnats.ConsumerConfig, handle func(context.Context, *outbox.Message) error) *outboxnats.Consumer {
	t.Helper()
	if cfg.URL == "" && cfg.Conn == nil {
		cfg.URL = outboxnats.URL(serverURL())
	}
	cfg.Handler = handle
	c, err := outboxnats.NewConsumer(context.Background(), cfg)
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
	if err := c.Start(testCtx(t)); err != nil {
		t.Fatalf("start: %v", err)
	}
	return c
}

// collector records what a handler received.
type collector struct {
	mu    sync.Mutex
	msgs  map[string]*outbox.Message
	count map[string]int
}

func newCollector() *collector {
	return &collector{msgs: map[string]*outbox.Message{}, count: map[string]int{}}
}

func (c *collector) handle(_ context.Context, m *outbox.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs[m.ID] = m
	c.count[m.ID]++
	return nil
}

func (c *collector) len() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.msgs) }

func TestConsumerRoundTrip(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw=%t", raw), func(t *testing.T) {
			s := needServer(t)
			st := s.createStream(t, nil)
			durable := st.durable(t, nil)
			tr := newTransport(t, outboxnats.Config{Subject: st.subject(), RawPayload: raw})
			msgs := messages(6, "ORDER_PLACED", "")
			for i, m := range msgs {
				if i%2 == 0 {
					m.Key = fmt.Sprintf("order-%d", i)
				}
				m.Headers = map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "X-Tenant": "acme"}
				if !raw {
					m.Result = json.RawMessage(`{"ok":true}`)
				}
			}
			prepared(t, msgs...)
			if err := tr.Publish(testCtx(t), msgs); err != nil {
				t.Fatal(err)
			}

			col := newCollector()
			c := newConsumer(t, outboxnats.ConsumerConfig{Stream: st.name, Durable: durable, RawPayload: raw}, col.handle)
			waitFor(t, 10*time.Second, "every message acked", func() bool { return c.Stats().Acked == int64(len(msgs)) })

			for _, want := range msgs {
				got := col.msgs[want.ID]
				if got == nil {
					t.Fatalf("message %s not received", want.ID)
				}
				if got.Type != want.Type || got.Key != want.Key || string(got.Payload) != string(want.Payload) {
					t.Errorf("received %+v, want %+v", got, want)
				}
				if !raw && (string(got.Result) != string(want.Result) || !got.CreatedAt.Equal(want.CreatedAt.Truncate(time.Millisecond))) {
					t.Errorf("received result %s at %v, want %s at %v", got.Result, got.CreatedAt, want.Result, want.CreatedAt)
				}
				if len(got.Headers) != 2 || got.Headers["traceparent"] != want.Headers["traceparent"] || got.Headers["X-Tenant"] != "acme" {
					t.Errorf("received headers %v, want %v (JetStream's and the transport's own left out)", got.Headers, want.Headers)
				}
			}
			if notDelivered, ackPending := st.pending(t, durable); notDelivered != 0 || ackPending != 0 {
				t.Errorf("after the run the durable consumer has %d undelivered and %d unacked messages, want none", notDelivered, ackPending)
			}
			if s := c.Stats(); s.Received != int64(len(msgs)) || s.Handled != int64(len(msgs)) || s.Failed != 0 || s.InFlight != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestConsumerFailureRedelivered(t *testing.T) {
	s := needServer(t)
	st := s.createStream(t, nil)
	durable := st.durable(t, func(c *jetstream.ConsumerConfig) { c.MaxDeliver = 3 })
	tr := newTransport(t, outboxnats.Config{Subject: st.subject()})
	msgs := prepared(t, messages(4, "FLAKY", "")...)
	poison := prepared(t, &outbox.Message{Type: "POISON", Payload: json.RawMessage(`{}`)})[0]
	if err := tr.Publish(testCtx(t), append(msgs, poison)); err != nil {
		t.Fatal(err)
	}
	// The server announces a message that reached MaxDeliver: that advisory is the dead letter.
	advisories, err := s.nc.SubscribeSync("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + st.name + "." + durable)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = advisories.Unsubscribe() }()

	var mu sync.Mutex
	deliveries := map[string]int{}
	c := newConsumer(t, outboxnats.ConsumerConfig{Stream: st.name, Durable: durable}, func(_ context.Context, m *outbox.Message) error {
		mu.Lock()
		deliveries[m.ID]++
		n := deliveries[m.ID]
		mu.Unlock()
		switch {
		case m.Type == "POISON":
			return errors.New("never works")
		case n == 1 && m.Payload[5] == '0':
			panic("first delivery panics")
		case n == 1:
			return errors.New("first delivery fails")
		}
		return nil
	})
	waitFor(t, 10*time.Second, "every good message handled after its redelivery", func() bool { return c.Stats().Acked == int64(len(msgs)) })

	adv, err := advisories.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no MAX_DELIVERIES advisory for the poison message: %v", err)
	}
	var body struct {
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries int    `json:"deliveries"`
	}
	if err := json.Unmarshal(adv.Data, &body); err != nil || body.Deliveries != 3 {
		t.Fatalf("advisory %s: %v, want deliveries 3", adv.Data, err)
	}
	raw, err := st.js.GetMsg(testCtx(t), body.StreamSeq)
	if err != nil {
		t.Fatalf("read the dead message by its sequence: %v", err)
	}
	if got, err := backend.DecodeEnvelope(raw.Data); err != nil || got.ID != poison.ID {
		t.Fatalf("advisory names %v (%v), want the poison message %s", got, err, poison.ID)
	}
	// The counters follow each nak once it is sent: wait for them rather than read them at once.
	waitFor(t, 10*time.Second, "every failure counted and nak'ed", func() bool {
		s := c.Stats()
		return s.Failed == int64(len(msgs))+3 && s.Requeued == s.Failed
	})
	mu.Lock()
	defer mu.Unlock()
	for _, m := range msgs {
		if deliveries[m.ID] != 2 {
			t.Errorf("message %s delivered %d times, want 2 (failed once, then handled)", m.ID, deliveries[m.ID])
		}
	}
	if deliveries[poison.ID] != 3 {
		t.Errorf("poison message delivered %d times, want MaxDeliver = 3", deliveries[poison.ID])
	}
	if s := c.Stats(); s.Failed != int64(len(msgs))+3 || s.Requeued != s.Failed || s.SettleErrors != 0 {
		t.Errorf("stats %+v: want %d failures, each nak'ed", s, len(msgs)+3)
	}
}

// A handler slower than the AckWait keeps its message: it is marked in progress every half
// AckWait, and another consumer of the durable never sees it.
func TestConsumerExtendsWhileHandling(t *testing.T) {
	s := needServer(t)
	st := s.createStream(t, nil)
	durable := st.durable(t, func(c *jetstream.ConsumerConfig) { c.AckWait = 2 * time.Second })
	tr := newTransport(t, outboxnats.Config{Subject: st.subject()})
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "SLOW", "")...)); err != nil {
		t.Fatal(err)
	}
	var c *outboxnats.Consumer
	ready := make(chan struct{})
	var calls atomic.Int32
	c = newConsumer(t, outboxnats.ConsumerConfig{Stream: st.name, Durable: durable, Concurrency: 1}, func(ctx context.Context, _ *outbox.Message) error {
		calls.Add(1)
		<-ready
		// Outlive the AckWait twice over: only the InProgress marks (every second, half the
		// AckWait) keep the message ours.
		select {
		case <-time.After(5 * time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	waitFor(t, 10*time.Second, "the message received", func() bool { return c.Stats().Received == 1 })
	// A second consumer of the durable, with a free handler, gets whatever the server
	// redelivers once an AckWait ran out.
	var stolen atomic.Int32
	newConsumer(t, outboxnats.ConsumerConfig{Stream: st.name, Durable: durable, Concurrency: 1}, func(context.Context, *outbox.Message) error {
		stolen.Add(1)
		return nil
	})
	close(ready)
	waitFor(t, 20*time.Second, "the message acked", func() bool { return c.Stats().Acked == 1 })
	if n := calls.Load(); n != 1 || c.Stats().Received != 1 || stolen.Load() != 0 {
		t.Fatalf("handler called %d times, %d deliveries, %d redelivered to the other consumer; want 1, 1, 0: the message was redelivered while it was held", n, c.Stats().Received, stolen.Load())
	}
}

func TestConsumerMalformedTerminated(t *testing.T) {
	s := needServer(t)
	st := s.createStream(t, nil)
	durable := st.durable(t, nil)
	if _, err := s.js.Publish(testCtx(t), st.prefix+".GARBAGE", []byte("not an envelope")); err != nil {
		t.Fatal(err)
	}
	tr := newTransport(t, outboxnats.Config{Subject: st.subject()})
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "GOOD", "")...)); err != nil {
		t.Fatal(err)
	}
	col := newCollector()
	obs, logs := observer.New(zapcore.DebugLevel)
	c := newConsumer(t, outboxnats.ConsumerConfig{Stream: st.name, Durable: durable, Logger: zap.New(obs)}, col.handle)
	waitFor(t, 10*time.Second, "the good message acked and the bad one terminated", func() bool {
		s := c.Stats()
		return s.Acked == 1 && s.Malformed == 1
	})
	waitFor(t, 10*time.Second, "nothing pending on the durable consumer", func() bool {
		notDelivered, ackPending := st.pending(t, durable)
		return notDelivered == 0 && ackPending == 0
	})
	if col.len() != 1 {
		t.Fatalf("handler saw %d messages, want only the good one", col.len())
	}
	bad := logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(bad) != 1 || bad[0].ContextMap()["ref"] != "stream_seq 1" || bad[0].ContextMap()["attempt"] != int64(1) ||
		!strings.Contains(bad[0].ContextMap()["error"].(string), "decode") || bad[0].ContextMap()["durable"] != durable {
		t.Fatalf("error logs %v, want one naming the malformed message's sequence, delivery and error", bad)
	}
	handled := logs.FilterMessage("handled").All()
	if len(handled) != 1 || handled[0].ContextMap()["type"] != "GOOD" || handled[0].ContextMap()["id"] == "" {
		t.Fatalf("debug logs %v, want the good message's ID and type", handled)
	}
}

func TestConsumerConcurrent(t *testing.T) {
	s := needServer(t)
	st := s.createStream(t, nil)
	durable := st.durable(t, nil)
	tr := newTransport(t, outboxnats.Config{Subject: st.subject()})
	msgs := prepared(t, messages(200, "MANY", "")...)
	if err := tr.Publish(testCtx(t), msgs); err != nil {
		t.Fatal(err)
	}

	// The first 8 handlers wait for each other: they can only all return once both consumers
	// (4 handlers each) hold 4 messages at once.
	const consumers, concurrency = 2, 4
	var running, peak atomic.Int32
	var arrived atomic.Int32
	col := newCollector()
	handle := func(ctx context.Context, m *outbox.Message) error {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		if arrived.Add(1) <= consumers*concurrency {
			deadline := time.Now().Add(10 * time.Second)
			for arrived.Load() < consumers*concurrency {
				if time.Now().After(deadline) || ctx.Err() != nil {
					return errors.New("the other handlers never ran at the same time")
				}
				time.Sleep(time.Millisecond)
			}
		}
		return col.handle(ctx, m)
	}
	var cs []*outboxnats.Consumer
	for range consumers {
		cs = append(cs, newConsumer(t, outboxnats.ConsumerConfig{Stream: st.name, Durable: durable, Concurrency: concurrency}, handle))
	}
	waitFor(t, 15*time.Second, "every message handled", func() bool { return col.len() == len(msgs) })
	waitFor(t, 10*time.Second, "every ack confirmed", func() bool {
		var acked int64
		for _, c := range cs {
			acked += c.Stats().Acked
		}
		return acked >= int64(len(msgs))
	})
	if p := peak.Load(); p != consumers*concurrency {
		t.Errorf("peak of %d handlers at once, want %d (%d consumers × Concurrency %d, never more)", p, consumers*concurrency, consumers, concurrency)
	}
	for i, c := range cs {
		if s := c.Stats(); s.Handled == 0 || s.Failed != 0 {
			t.Errorf("consumer %d: stats %+v, want a share of the messages and no failure", i, s)
		}
	}
}

// Stop waits for the handler in flight and its ack. (A handler past Stop's deadline is the
// consumer suite's StopDuringSlowHandler.)
func TestConsumerStop(t *testing.T) {
	{
		s := needServer(t)
		st := s.createStream(t, nil)
		durable := st.durable(t, nil)
		tr := newTransport(t, outboxnats.Config{Subject: st.subject()})
		if err := tr.Publish(testCtx(t), prepared(t, messages(1, "STOP", "")...)); err != nil {
			t.Fatal(err)
		}
		entered, release := make(chan struct{}), make(chan struct{})
		c := newConsumer(t, outboxnats.ConsumerConfig{Stream: st.name, Durable: durable}, func(ctx context.Context, _ *outbox.Message) error {
			close(entered)
			<-release
			return ctx.Err()
		})
		<-entered
		stopped := make(chan error, 1)
		go func() { stopped <- c.Stop(testCtx(t)) }()
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned %v while a handler ran", err)
		case <-time.After(100 * time.Millisecond): // Stop must still be waiting
		}
		close(release)
		if err := <-stopped; err != nil {
			t.Fatalf("stop: %v", err)
		}
		if s := c.Stats(); s.Acked != 1 || s.InFlight != 0 {
			t.Fatalf("stats %+v: want the message acked before Stop returned", s)
		}
		if notDelivered, ackPending := st.pending(t, durable); notDelivered != 0 || ackPending != 0 {
			t.Fatalf("%d undelivered, %d unacked after a clean stop", notDelivered, ackPending)
		}
	}
}

func TestConsumerStart(t *testing.T) {
	s := needServer(t)
	st := s.createStream(t, nil)
	noop := func(context.Context, *outbox.Message) error { return nil }

	c, err := outboxnats.NewConsumer(context.Background(), outboxnats.ConsumerConfig{Connection: outboxnats.Connection{URL: outboxnats.URL(serverURL())}, Stream: st.name, Durable: "missing", Handler: noop})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(testCtx(t)); !outbox.IsUnavailable(err) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Start on a missing durable consumer = %v, want an outage naming it", err)
	}

	ackNone := st.durable(t, func(c *jetstream.ConsumerConfig) { c.Durable, c.AckPolicy = "ack-none", jetstream.AckNonePolicy })
	c, err = outboxnats.NewConsumer(context.Background(), outboxnats.ConsumerConfig{Connection: outboxnats.Connection{Conn: s.nc}, Stream: st.name, Durable: ackNone, Handler: noop})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(testCtx(t)); err == nil || !strings.Contains(err.Error(), "AckExplicit") {
		t.Fatalf("Start on an AckNone consumer = %v, want a refusal naming AckExplicit", err)
	}

	ok := st.durable(t, nil)
	c = newConsumer(t, outboxnats.ConsumerConfig{Connection: outboxnats.Connection{Conn: s.nc}, Stream: st.name, Durable: ok}, noop)
	if err := c.Start(testCtx(t)); !errors.Is(err, outboxnats.ErrConsumerStarted) {
		t.Fatalf("second Start = %v, want ErrConsumerStarted", err)
	}
	if !s.nc.IsConnected() {
		t.Fatal("the consumer closed a connection it was given")
	}
}

func TestConsumerConfig(t *testing.T) {
	noop := func(context.Context, *outbox.Message) error { return nil }
	base := outboxnats.ConsumerConfig{Stream: "ORDERS", Durable: "billing", Handler: noop}
	cases := []struct {
		edit  func(*outboxnats.ConsumerConfig)
		field string
	}{
		{func(c *outboxnats.ConsumerConfig) { c.Stream = "" }, "Stream"},
		{func(c *outboxnats.ConsumerConfig) { c.Stream = "a.b" }, "Stream"},
		{func(c *outboxnats.ConsumerConfig) { c.Durable = "" }, "Durable"},
		{func(c *outboxnats.ConsumerConfig) { c.Durable = "a b" }, "Durable"},
		{func(c *outboxnats.ConsumerConfig) { c.Handler = nil }, "Handler"},
		{func(c *outboxnats.ConsumerConfig) {
			c.Backoff, c.NakDelay = outbox.Backoff{Initial: time.Second}, time.Second
		}, "NakDelay"},
		{func(c *outboxnats.ConsumerConfig) { c.Backoff = outbox.Backoff{Initial: -1} }, "Backoff"},
		{func(c *outboxnats.ConsumerConfig) { c.Concurrency = -1 }, "Concurrency"},
		{func(c *outboxnats.ConsumerConfig) { c.Concurrency = outboxnats.MaxConsumerConcurrency + 1 }, "Concurrency"},
		{func(c *outboxnats.ConsumerConfig) { c.FetchWait = time.Millisecond }, "FetchWait"},
		{func(c *outboxnats.ConsumerConfig) { c.HandlerTimeout = -1 }, "HandlerTimeout"},
		{func(c *outboxnats.ConsumerConfig) { c.AckTimeout = -1 }, "AckTimeout"},
		{func(c *outboxnats.ConsumerConfig) { c.URL = "http://host:4222" }, "URL"},
		{func(c *outboxnats.ConsumerConfig) { c.Password = "pw" }, "User"},
		{func(c *outboxnats.ConsumerConfig) { c.Conn, c.URL = &natsgo.Conn{}, "nats://h:4222" }, "URL"},
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
	const secret = "consumer-secret-do-not-print"
	for _, edit := range []func(*outboxnats.ConsumerConfig){
		func(c *outboxnats.ConsumerConfig) { c.User, c.Password = "svc", secret },
		func(c *outboxnats.ConsumerConfig) { c.Token = secret },
		func(c *outboxnats.ConsumerConfig) { c.URL = "nats://svc:" + secret + "@127.0.0.1:4222" },
	} {
		cfg := base
		edit(&cfg)
		j, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{fmt.Sprintf("%s", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), string(j)} {
			if strings.Contains(s, secret) {
				t.Fatalf("config text shows the secret: %s", s)
			}
		}
	}
}

// A negative NakDelay sends no nak: the failed message comes back when its AckWait ends.
func TestConsumerFailureLeftToAckWait(t *testing.T) {
	s := needServer(t)
	st := s.createStream(t, nil)
	durable := st.durable(t, func(c *jetstream.ConsumerConfig) { c.AckWait = time.Second })
	tr := newTransport(t, outboxnats.Config{Subject: st.subject()})
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "LATER", "")...)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var at []time.Time
	c := newConsumer(t, outboxnats.ConsumerConfig{Stream: st.name, Durable: durable, NakDelay: -1}, func(context.Context, *outbox.Message) error {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		if len(at) == 1 {
			return errors.New("first delivery fails")
		}
		return nil
	})
	waitFor(t, 10*time.Second, "the message handled on its redelivery", func() bool { return c.Stats().Acked == 1 })
	mu.Lock()
	defer mu.Unlock()
	if len(at) != 2 || at[1].Sub(at[0]) < 900*time.Millisecond {
		t.Fatalf("deliveries at %v: want a second one once the 1s AckWait ended", at)
	}
	if s := c.Stats(); s.Failed != 1 || s.SettleErrors != 0 {
		t.Fatalf("stats %+v: want one failure, given back without a nak", s)
	}
}
