package outboxtest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
	memstore "github.com/txoutbox/outbox/store/memory"
)

// ConsumerUnderTest is what a transport's NewConsumer returns: every one is built on package
// consume, so its Stats are the runtime's.
type ConsumerUnderTest interface {
	outbox.Consumer
	Stats() consume.Stats
}

// ConsumerHarness is one fresh, isolated destination (its own queue, stream or topic) for one
// test, with what the suite needs to publish to it and consume from it.
type ConsumerHarness struct {
	// Transport publishes to the destination. Required.
	Transport outbox.Transport
	// NewConsumer returns a consumer of the destination, not started, calling h. Each call
	// returns another consumer of the same destination (the same group), as a second process
	// would run. Concurrency is the factory's choice (the suite works with 1 and above).
	// Required.
	NewConsumer func(t *testing.T, h consume.Handler) ConsumerUnderTest
	// SendMalformed puts on the destination one delivery whose body cannot be decoded.
	// Required when ConsumerFeatures.Malformed is set.
	SendMalformed func(ctx context.Context) error
	// Restart stops the broker and starts it again (or cuts and restores the consumer's
	// connection), returning when it serves again. Required when ConsumerFeatures.Restart is
	// set.
	Restart func(ctx context.Context) error
	// Inbox, when set, runs an effect at most once per (consumer, message ID) in the
	// consumer's transaction (a real inbox, e.g. store/sqlite/inbox); the duplicates case then
	// uses it. Default: the suite's own record of effects keyed by ID, committed with the
	// effect as an inbox does.
	Inbox func(ctx context.Context, m *outbox.Message, effect func(ctx context.Context) error) error
}

// ConsumerFactory returns a fresh harness for t and registers its cleanup with t.Cleanup.
type ConsumerFactory func(t *testing.T) ConsumerHarness

// ConsumerFeatures says what a transport's consumer supports; the suite skips what it does not.
type ConsumerFeatures struct {
	// KeyOrder: the messages of one key are handled in the order published, each only after
	// the one before it was handled (SQS FIFO, a Kafka partition, KeepKeyOrder on NATS or
	// RabbitMQ, the memory transport under an ordered relay).
	KeyOrder bool
	// Malformed: SendMalformed works; the delivery is rejected (dead-lettered or terminated as
	// the transport documents) and others keep flowing.
	Malformed bool
	// Restart: Restart works; the consumer comes back by itself and nothing is lost.
	Restart bool
	// MinRedeliveryDelay is the least time between a failed handler call and the message's
	// next delivery: the backoff the transport's consumer was configured with in the harness
	// (rounded as its broker counts). Default 0: not checked.
	MinRedeliveryDelay time.Duration
	// DedupesPublishes: the broker drops a second publish of a message ID (SQS FIFO's
	// deduplication by ID); the duplicates case then counts on redeliveries only.
	DedupesPublishes bool
	// Wait bounds each wait for deliveries. Default 30s.
	Wait time.Duration
}

// RunConsumerSuite runs the consumer contract against the destinations newHarness returns.
func RunConsumerSuite(t *testing.T, newHarness ConsumerFactory, f ConsumerFeatures) {
	if f.Wait == 0 {
		f.Wait = 30 * time.Second
	}
	s := &consumerSuite{newHarness: newHarness, f: f}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Handles", s.testHandles},
		{"HandlerErrorRedelivered", s.testHandlerError},
		{"Malformed", s.testMalformed},
		{"StopDuringSlowHandler", s.testStopSlow},
		{"DuplicatesEffectOnce", s.testDuplicates},
		{"KeyOrder", s.testKeyOrder},
		{"Restart", s.testRestart},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t)
		})
	}
}

type consumerSuite struct {
	newHarness ConsumerFactory
	f          ConsumerFeatures
}

// start starts c and stops it at cleanup.
func (s *consumerSuite) start(t *testing.T, c ConsumerUnderTest) {
	t.Helper()
	if err := c.Start(testCtx(t)); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
}

// relay publishes msgs through a relay over a fresh memory store, as a service would: a
// publish that fails (the memory transport's failed handler) is retried with a short backoff.
// It runs until the test ends.
func (s *consumerSuite) relay(t *testing.T, tr outbox.Transport, msgs ...*outbox.Message) *memstore.Store {
	t.Helper()
	st := memstore.New()
	if err := st.Add(testCtx(t), msgs...); err != nil {
		t.Fatalf("add: %v", err)
	}
	r, err := outbox.NewRelay(st, tr, outbox.Config{
		PollInterval: 10 * time.Millisecond, MaxAttempts: 1000,
		Backoff: outbox.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := r.Stop(ctx); err != nil {
			t.Errorf("relay stop: %v", err)
		}
	})
	return st
}

// record remembers, per message ID, each handler call and its time, safe for concurrent use.
type record struct {
	mu    sync.Mutex
	calls map[string][]time.Time
	seen  chan struct{} // gets a value after every call
}

func newRecord() *record {
	return &record{calls: map[string][]time.Time{}, seen: make(chan struct{}, 1)}
}

// add records a call of id and returns how many calls id had, this one included.
func (r *record) add(id string) int {
	r.mu.Lock()
	r.calls[id] = append(r.calls[id], time.Now())
	n := len(r.calls[id])
	r.mu.Unlock()
	select {
	case r.seen <- struct{}{}:
	default:
	}
	return n
}

func (r *record) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls[id])
}

func (r *record) times(id string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.calls[id]...)
}

// waitFor waits until cond holds, re-checking after every recorded call and every 50ms, and
// fails the test with what() after s.f.Wait.
func (s *consumerSuite) waitFor(t *testing.T, seen <-chan struct{}, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.NewTimer(s.f.Wait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-seen:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("after %v: %s", s.f.Wait, what())
		}
	}
}

// consumerMessages returns n messages of key (which may be empty) with payloads {"n":i} and
// fresh IDs, prepared as the write side prepares them.
func consumerMessages(t *testing.T, n int, key string) []*outbox.Message {
	return prepared(t, NewMessages(n, "CONSUMER_SUITE", key)...)
}

func payloadN(t *testing.T, m *outbox.Message) int {
	var p struct{ N int }
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		t.Errorf("payload %s: %v", m.Payload, err)
	}
	return p.N
}

func statsText(c ConsumerUnderTest) string { return fmt.Sprintf("%+v", c.Stats()) }
