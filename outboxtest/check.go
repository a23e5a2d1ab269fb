package outboxtest

import (
	"testing"

	"github.com/txoutbox/outbox"
)

// DeliveryCheck states what a delivery must satisfy besides "every written message arrived".
type DeliveryCheck struct {
	// Ordered: for each non-empty Key, messages first arrive in the order they were written.
	Ordered bool
	// MayRepeat lists the IDs allowed to arrive more than once (their ack was lost to a crash).
	MayRepeat []string
	// MayMiss lists the IDs allowed not to arrive (dead-lettered on purpose).
	MayMiss []string
}

// DeliveryReport summarises a delivery.
type DeliveryReport struct {
	Written, Delivered, Duplicates, Lost, Unexpected, OrderViolations int
}

// CheckDelivery compares what was written with what a consumer received, reports it, and
// fails t on a lost message, an unexpected (never written, e.g. rolled back) message, a
// duplicate outside MayRepeat, or, when Ordered, a key whose messages first arrived out of
// write order. written must be in write order.
func CheckDelivery(t testing.TB, written, delivered []*outbox.Message, c DeliveryCheck) DeliveryReport {
	t.Helper()
	r := Compare(written, delivered, c)
	switch {
	case r.Lost > 0:
		t.Errorf("%d of %d written messages were never delivered", r.Lost, r.Written)
	case r.Unexpected > 0:
		t.Errorf("%d delivered messages were never written (or were rolled back)", r.Unexpected)
	case r.OrderViolations > 0:
		t.Errorf("%d per-key order violations", r.OrderViolations)
	}
	if r.Duplicates > 0 {
		repeatable := map[string]bool{}
		for _, id := range c.MayRepeat {
			repeatable[id] = true
		}
		count := map[string]int{}
		for _, m := range delivered {
			count[m.ID]++
			if count[m.ID] == 2 && !repeatable[m.ID] {
				t.Errorf("message %s was delivered more than once without a lost ack", m.ID)
			}
		}
	}
	return r
}

// Compare computes a DeliveryReport without judging it.
func Compare(written, delivered []*outbox.Message, c DeliveryCheck) DeliveryReport {
	r := DeliveryReport{Written: len(written), Delivered: len(delivered)}
	position := make(map[string]int, len(written))
	for i, m := range written {
		position[m.ID] = i
	}
	mayMiss := map[string]bool{}
	for _, id := range c.MayMiss {
		mayMiss[id] = true
	}
	seen := make(map[string]bool, len(delivered))
	lastOfKey := map[string]int{}
	for _, m := range delivered {
		pos, known := position[m.ID]
		switch {
		case !known:
			r.Unexpected++
			continue
		case seen[m.ID]:
			r.Duplicates++
			continue
		}
		seen[m.ID] = true
		key := written[pos].Key
		if c.Ordered && key != "" {
			if last, ok := lastOfKey[key]; ok && pos < last {
				r.OrderViolations++
			}
			lastOfKey[key] = pos
		}
	}
	for _, m := range written {
		if !seen[m.ID] && !mayMiss[m.ID] {
			r.Lost++
		}
	}
	return r
}
