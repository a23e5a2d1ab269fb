package outboxtest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/txoutbox/outbox"
)

// The messages of one key are handled in the order published, a failure included: nothing of
// the key overtakes a message whose handler failed. Other keys keep flowing.
func (s *consumerSuite) testKeyOrder(t *testing.T) {
	if !s.f.KeyOrder {
		t.Skip("the transport keeps no per-key order (ConsumerFeatures.KeyOrder)")
	}
	h := s.newHarness(t)
	rec := newRecord()
	const perKey = 8
	keys := []string{"k1", "k2", "k3"}
	var msgs []*outbox.Message
	for _, k := range keys {
		msgs = append(msgs, consumerMessages(t, perKey, k)...)
	}
	var mu sync.Mutex
	order := map[string][]int{} // key -> n of each successful handling, in order
	c := h.NewConsumer(t, func(ctx context.Context, m *outbox.Message) error {
		n := payloadN(t, m)
		if calls := rec.add(m.ID); n == 3 && calls == 1 {
			return fmt.Errorf("the suite fails message 3 of %s once", m.Key)
		}
		mu.Lock()
		order[m.Key] = append(order[m.Key], n)
		mu.Unlock()
		return nil
	})
	s.start(t, c)
	s.relay(t, h.Transport, msgs...)
	s.waitFor(t, rec.seen, func() bool { return allSeen(rec, msgs, 1) && c.Stats().Acked >= int64(len(msgs)) },
		func() string { return "not every message handled: " + statsText(c) })
	mu.Lock()
	defer mu.Unlock()
	for _, k := range keys {
		got := order[k]
		for i := 1; i < len(got); i++ {
			if got[i] < got[i-1] {
				t.Errorf("key %s handled in the order %v", k, got)
				break
			}
		}
		if len(got) < perKey || got[len(got)-1] != perKey-1 {
			t.Errorf("key %s handled %v, want 0 to %d", k, got, perKey-1)
		}
	}
}
