package outboxtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
)

// Stop during a handler that runs past Stop's deadline returns within the deadline and the
// runtime's grace, and that message is delivered again to the next consumer.
func (s *consumerSuite) testStopSlow(t *testing.T) {
	h := s.newHarness(t)
	rec := newRecord()
	msgs := consumerMessages(t, 1, "")
	entered := make(chan struct{}, 1)
	a := h.NewConsumer(t, func(ctx context.Context, m *outbox.Message) error {
		rec.add(m.ID)
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done() // slower than Stop's deadline
		return ctx.Err()
	})
	s.start(t, a)
	s.relay(t, h.Transport, msgs...)
	select {
	case <-entered:
	case <-time.After(s.f.Wait):
		t.Fatalf("the slow handler was not called: %s", statsText(a))
	}
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	began := time.Now()
	_ = a.Stop(ctx) // the error says handlers still ran; what counts is when and what follows
	if took, bound := time.Since(began), deadline+consume.DefaultStopGrace+2*time.Second; took > bound {
		t.Errorf("Stop took %v, want at most %v", took, bound)
	}

	b := h.NewConsumer(t, func(ctx context.Context, m *outbox.Message) error {
		rec.add(m.ID)
		return nil
	})
	s.start(t, b)
	s.waitFor(t, rec.seen, func() bool { return b.Stats().Acked >= 1 },
		func() string {
			return fmt.Sprintf("not delivered again after the stop: A %s, B %s", statsText(a), statsText(b))
		})
	if n := rec.count(msgs[0].ID); n < 2 {
		t.Errorf("message handled %d times, want the slow call and the redelivery", n)
	}
}

// A broker restart in mid-stream loses nothing: the consumer comes back by itself.
func (s *consumerSuite) testRestart(t *testing.T) {
	if !s.f.Restart {
		t.Skip("no broker restart hook (ConsumerFeatures.Restart)")
	}
	h := s.newHarness(t)
	rec := newRecord()
	c := h.NewConsumer(t, func(ctx context.Context, m *outbox.Message) error {
		rec.add(m.ID)
		return nil
	})
	s.start(t, c)
	before, after := consumerMessages(t, 10, ""), consumerMessages(t, 10, "")
	s.relay(t, h.Transport, before...)
	s.waitFor(t, rec.seen, func() bool { return allSeen(rec, before, 1) },
		func() string { return "before the restart: " + statsText(c) })
	if err := h.Restart(testCtx(t)); err != nil {
		t.Fatalf("restart: %v", err)
	}
	s.relay(t, h.Transport, after...)
	s.waitFor(t, rec.seen, func() bool { return allSeen(rec, after, 1) },
		func() string { return "after the restart: " + statsText(c) })
}
