package outboxtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/txoutbox/outbox"
)

// effects is the suite's stand-in for an inbox when the harness has none: the record of a
// message's ID is written with its effect, in one critical section standing for the consumer's
// transaction, so a failed effect records nothing and a redelivery of a done one does nothing.
type effects struct {
	mu   sync.Mutex
	done map[string]int // ID -> effects committed
}

func (e *effects) inbox(ctx context.Context, m *outbox.Message, effect func(ctx context.Context) error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done[m.ID] > 0 {
		return nil
	}
	if err := effect(ctx); err != nil {
		return err // rolled back: nothing recorded
	}
	e.done[m.ID]++
	return nil
}

// Each message is delivered three times (two relays publish it, and its first handling fails
// after its effect began, which the inbox rolls back); each effect happens once.
func (s *consumerSuite) testDuplicates(t *testing.T) {
	h := s.newHarness(t)
	rec := newRecord()
	e := &effects{done: map[string]int{}}
	inbox := h.Inbox
	if inbox == nil {
		inbox = e.inbox
	}
	var mu sync.Mutex
	applied := map[string]int{} // effects seen by the business side
	began := map[string]int{}   // effects begun, the failed first one included
	c := h.NewConsumer(t, func(ctx context.Context, m *outbox.Message) error {
		rec.add(m.ID)
		return inbox(ctx, m, func(ctx context.Context) error {
			// The effect, not the delivery, fails the first time: the two copies of a message
			// may be handled at once, and the inbox then runs the effect for one of them only.
			mu.Lock()
			defer mu.Unlock()
			if began[m.ID]++; began[m.ID] == 1 {
				return errors.New("the suite's effect fails the first time, after it began")
			}
			applied[m.ID]++
			return nil
		})
	})
	s.start(t, c)
	msgs := consumerMessages(t, 10, "")
	twice := make([]*outbox.Message, len(msgs))
	for i, m := range msgs {
		twice[i] = m.Clone()
	}
	s.relay(t, h.Transport, msgs...)
	s.relay(t, h.Transport, twice...)
	deliveries, acks := 3, 2*len(msgs) // the failed one, then once per publish
	if s.f.DedupesPublishes {
		deliveries, acks = 2, len(msgs)
	}
	s.waitFor(t, rec.seen, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			if applied[m.ID] < 1 || rec.count(m.ID) < deliveries {
				return false
			}
		}
		return c.Stats().Acked >= int64(acks)
	}, func() string {
		return fmt.Sprintf("not every message delivered %d times with an effect: %s", deliveries, statsText(c))
	})
	mu.Lock()
	defer mu.Unlock()
	for _, m := range msgs {
		if n := applied[m.ID]; n != 1 {
			t.Errorf("message %s: %d effects after %d deliveries, want 1", m.ID, n, rec.count(m.ID))
		}
	}
}
