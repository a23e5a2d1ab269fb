package memory_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

func prepared(t *testing.T, n int) []*outbox.Message {
	t.Helper()
	msgs := outboxtest.NewMessages(n, "T", "")
	if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func newConsumer(t *testing.T, tr *memory.Transport, cfg memory.ConsumerConfig, h func(context.Context, *outbox.Message) error) *memory.Consumer {
	t.Helper()
	cfg.Transport, cfg.Handler = tr, h
	c, err := memory.NewConsumer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c
}

func TestConsumerHandles(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tr := memory.New()
	var got atomic.Int64
	c := newConsumer(t, tr, memory.ConsumerConfig{}, func(ctx context.Context, m *outbox.Message) error {
		m.Payload = nil // a copy: the publisher's message is untouched
		got.Add(1)
		return nil
	})
	msgs := prepared(t, 5)
	if err := tr.Publish(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if got.Load() != 5 || msgs[0].Payload == nil {
		t.Fatalf("handled %d, payload %s", got.Load(), msgs[0].Payload)
	}
	if st := c.Stats(); st.Received != 5 || st.Handled != 5 || st.Failed != 0 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := c.Start(context.Background()); !errors.Is(err, outbox.ErrConsumerStarted) {
		t.Fatalf("second Start: %v", err)
	}
}

// A failed handler fails its message's publish, so the relay sends it again: the consumer sees
// a redelivery as it would from a broker.
func TestConsumerFailureRedeliveredByRelay(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tr := memory.New()
	var calls atomic.Int64
	c := newConsumer(t, tr, memory.ConsumerConfig{}, func(ctx context.Context, m *outbox.Message) error {
		switch calls.Add(1) {
		case 1:
			return errors.New("try again")
		case 2:
			panic("bug")
		}
		return nil
	})
	st := memstore.New()
	msgs := outboxtest.NewMessages(1, "T", "")
	if err := st.Add(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.NewRelay(st, tr, outbox.Config{PollInterval: 10 * time.Millisecond, Backoff: outbox.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	err = tr.WaitFor(ctx, 1)
	if stopErr := relay.Stop(context.Background()); stopErr != nil {
		t.Fatal(stopErr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Handled != 1 || s.Failed != 2 || calls.Load() != 3 {
		t.Fatalf("stats %+v after %d calls", s, calls.Load())
	}
}

func TestConsumerStop(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tr := memory.New()
	entered := make(chan struct{})
	c := newConsumer(t, tr, memory.ConsumerConfig{}, func(ctx context.Context, m *outbox.Message) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	})
	msgs := prepared(t, 1)
	published := make(chan error, 1)
	go func() { published <- tr.Publish(context.Background(), msgs) }()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop past its deadline: %v", err)
	}
	// The cancelled handler failed its publish: the relay would send the message again.
	var be *outbox.BatchError
	if err := <-published; !errors.As(err, &be) || be.Failed[msgs[0].ID] == nil {
		t.Fatalf("publish during a cancelled handler: %v", err)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Failed != 1 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestConsumerConcurrency(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tr := memory.New()
	var now, peak atomic.Int64
	release := make(chan struct{})
	c := newConsumer(t, tr, memory.ConsumerConfig{Concurrency: 2}, func(ctx context.Context, m *outbox.Message) error {
		n := now.Add(1)
		defer now.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		return nil
	})
	errs := make(chan error, 4)
	for _, m := range prepared(t, 4) {
		go func() { errs <- tr.Publish(context.Background(), []*outbox.Message{m}) }()
	}
	deadline := time.Now().Add(5 * time.Second)
	for now.Load() < 2 && time.Now().Before(deadline) { // two run; the others wait for a slot
		time.Sleep(time.Millisecond)
	}
	close(release)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Fatalf("%d handlers ran at once with Concurrency 2", p)
	}
	if s := c.Stats(); s.Handled != 4 || s.Acked != 4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestConsumerConfig(t *testing.T) {
	h := func(context.Context, *outbox.Message) error { return nil }
	for _, c := range []struct {
		cfg   memory.ConsumerConfig
		field string
	}{
		{memory.ConsumerConfig{Handler: h}, "Transport"},
		{memory.ConsumerConfig{Transport: memory.New()}, "Handler"},
		{memory.ConsumerConfig{Transport: memory.New(), Handler: h, Concurrency: -1}, "Concurrency"},
	} {
		_, err := memory.NewConsumer(context.Background(), c.cfg)
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("NewConsumer: %v, want a config error naming %s", err, c.field)
		}
	}
}
