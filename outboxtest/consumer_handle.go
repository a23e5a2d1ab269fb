package outboxtest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/txoutbox/outbox"
)

func (s *consumerSuite) testHandles(t *testing.T) {
	h := s.newHarness(t)
	rec := newRecord()
	var mu sync.Mutex
	got := map[string]*outbox.Message{}
	c := h.NewConsumer(t, func(ctx context.Context, m *outbox.Message) error {
		mu.Lock()
		got[m.ID] = m
		mu.Unlock()
		rec.add(m.ID)
		return nil
	})
	s.start(t, c)
	msgs := consumerMessages(t, 20, "")
	s.relay(t, h.Transport, msgs...)
	s.waitFor(t, rec.seen, func() bool { return c.Stats().Acked >= int64(len(msgs)) && allSeen(rec, msgs, 1) },
		func() string { return "not every message handled and acked: " + statsText(c) })
	mu.Lock()
	defer mu.Unlock()
	for i, m := range msgs {
		g := got[m.ID]
		if g.Type != m.Type || payloadN(t, g) != i || !g.CreatedAt.Equal(m.CreatedAt) {
			t.Errorf("handled %s %s %s at %v, want %s %s at %v", g.ID, g.Type, g.Payload, g.CreatedAt, m.ID, m.Payload, m.CreatedAt)
		}
	}
	if st := c.Stats(); st.Failed != 0 || st.Malformed != 0 || st.Handled < int64(len(msgs)) || st.Received < st.Handled {
		t.Errorf("stats %+v", st)
	}
}

// A failed handler's delivery is given back, never acked, and comes again after the backoff;
// the other messages keep flowing meanwhile.
func (s *consumerSuite) testHandlerError(t *testing.T) {
	h := s.newHarness(t)
	rec := newRecord()
	msgs := consumerMessages(t, 5, "")
	bad := msgs[0].ID
	c := h.NewConsumer(t, func(ctx context.Context, m *outbox.Message) error {
		if n := rec.add(m.ID); m.ID == bad && n <= 2 {
			return fmt.Errorf("failure %d of the suite's bad message", n)
		}
		return nil
	})
	s.start(t, c)
	s.relay(t, h.Transport, msgs...)
	s.waitFor(t, rec.seen, func() bool {
		return allSeen(rec, msgs, 1) && rec.count(bad) >= 3 && c.Stats().Acked >= int64(len(msgs))
	}, func() string { return fmt.Sprintf("bad message handled %d times: %s", rec.count(bad), statsText(c)) })
	if s.f.MinRedeliveryDelay > 0 {
		calls := rec.times(bad)
		for i := 1; i < 3; i++ {
			// A tenth off for brokers that count time coarsely.
			if gap := calls[i].Sub(calls[i-1]); gap < s.f.MinRedeliveryDelay*9/10 {
				t.Errorf("redelivery %d came %v after the failure, want at least %v", i, gap, s.f.MinRedeliveryDelay)
			}
		}
	}
	st := c.Stats()
	if st.Failed < 2 || st.Requeued < 2 || st.Acked > st.Handled || st.Rejected != 0 {
		t.Errorf("stats %+v: want Failed and Requeued >= 2, Acked <= Handled, none rejected", st)
	}
}

// A delivery that cannot be decoded is rejected (dead-lettered or terminated, as the transport
// documents) without reaching the handler, and the messages after it are handled.
func (s *consumerSuite) testMalformed(t *testing.T) {
	if !s.f.Malformed {
		t.Skip("the transport cannot carry a malformed body (ConsumerFeatures.Malformed)")
	}
	h := s.newHarness(t)
	rec := newRecord()
	msgs := consumerMessages(t, 5, "")
	known := map[string]bool{}
	for _, m := range msgs {
		known[m.ID] = true
	}
	var strangers errorList
	c := h.NewConsumer(t, func(ctx context.Context, m *outbox.Message) error {
		if !known[m.ID] {
			strangers.add(fmt.Errorf("handler got %s %s %s", m.ID, m.Type, m.Payload))
		}
		rec.add(m.ID)
		return nil
	})
	s.start(t, c)
	if err := h.SendMalformed(testCtx(t)); err != nil {
		t.Fatalf("send malformed: %v", err)
	}
	s.relay(t, h.Transport, msgs...)
	s.waitFor(t, rec.seen, func() bool {
		st := c.Stats()
		return allSeen(rec, msgs, 1) && st.Malformed >= 1 && st.Rejected >= 1
	}, func() string { return "malformed not rejected or others not handled: " + statsText(c) })
	strangers.check(t)
}

// allSeen reports whether every message of msgs was handled at least n times.
func allSeen(rec *record, msgs []*outbox.Message, n int) bool {
	for _, m := range msgs {
		if rec.count(m.ID) < n {
			return false
		}
	}
	return true
}
