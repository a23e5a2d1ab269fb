package outboxtest

import (
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

func (s *inboxSuite) testRetention(t *testing.T) {
	s.needTransactions(t)
	if !s.f.Retention {
		t.Skip("the inbox has no retention")
	}
	t.Parallel()
	h := s.newInbox(t)
	ctx := testCtx(t)
	var old, young []*outbox.Message
	for i := range 5 {
		m := inboxMessage(t)
		mustHandle(t, h, "billing", m, applyEffect, false)
		if i < 3 {
			old = append(old, m)
			if err := h.Age(ctx, "billing", m.ID, 48*time.Hour); err != nil {
				t.Fatalf("age: %v", err)
			}
		} else {
			young = append(young, m)
		}
	}
	// Other consumers' old records go by the same rule.
	other := inboxMessage(t)
	mustHandle(t, h, "shipping", other, applyEffect, false)
	if err := h.Age(ctx, "shipping", other.ID, 48*time.Hour); err != nil {
		t.Fatalf("age: %v", err)
	}

	// Bounded batches: never more than limit per call, callers loop until fewer come back.
	var batches []int
	for {
		n, err := h.Prune(ctx, 24*time.Hour, 2)
		if err != nil {
			t.Fatalf("prune: %v", err)
		}
		if n > 2 {
			t.Fatalf("prune deleted %d records with limit 2", n)
		}
		batches = append(batches, n)
		if n < 2 {
			break
		}
		if len(batches) > 10 {
			t.Fatalf("prune does not converge: %v", batches)
		}
	}
	total := 0
	for _, n := range batches {
		total += n
	}
	if total != len(old)+1 {
		t.Fatalf("prune deleted %d records in batches %v, want %d", total, batches, len(old)+1)
	}
	for _, m := range old {
		mustRecorded(t, h, "billing", m.ID, false)
	}
	mustRecorded(t, h, "shipping", other.ID, false)
	for _, m := range young {
		mustRecorded(t, h, "billing", m.ID, true)
		mustHandle(t, h, "billing", m, applyEffect, true)
	}
	// Past the window a redelivery is no longer recognised: why the window must outlast the
	// broker's redelivery horizon.
	mustHandle(t, h, "billing", old[0], applyEffect, false)
	mustEffects(t, h, "billing", old[0].ID, 2)

	for _, bad := range []struct {
		age   time.Duration
		limit int
	}{{24 * time.Hour, 0}, {24 * time.Hour, -1}, {0, 10}, {-time.Hour, 10}} {
		if _, err := h.Prune(ctx, bad.age, bad.limit); err == nil {
			t.Errorf("prune(olderThan %v, limit %d) accepted bad arguments", bad.age, bad.limit)
		}
	}
}
