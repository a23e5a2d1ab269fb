//go:build torture

package torture

import (
	"slices"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
)

// TestTortureCommitOrderReference proves that the order check of contended keys compares against
// commit order, not against the order in which the writers' COMMIT calls returned: two
// transactions of one key whose COMMITs returned in the reverse of their commit order.
func TestTortureCommitOrderReference(t *testing.T) {
	msg := func(id, key string) *outbox.Message { return &outbox.Message{ID: id, Key: key} }
	l := newLedger()
	other := msg("o1", "agg-000") // an uncontended key keeps its slot
	l.committed([]*outbox.Message{other}, normal, false)
	// Transaction 2 of hot-000 committed second but its COMMIT returned first.
	second := []*outbox.Message{msg("b1", "hot-000"), msg("b2", "hot-000")}
	first := []*outbox.Message{msg("a1", "hot-000")}
	l.committedAt(second, 2)
	l.committedAt([]*outbox.Message{msg("x1", "hot-001")}, 1)
	l.committedAt(first, 1)

	l.mu.Lock()
	ordered := l.inCommitOrder()
	l.mu.Unlock()
	var ids []string
	for _, m := range ordered {
		ids = append(ids, m.ID)
	}
	if want := []string{"o1", "a1", "b1", "x1", "b2"}; !slices.Equal(ids, want) {
		t.Fatalf("inCommitOrder = %v, want %v", ids, want)
	}

	check := outboxtest.DeliveryCheck{Ordered: true}
	inCommitOrder := []*outbox.Message{ordered[0], first[0], second[0], second[1], ordered[3]}
	if r := outboxtest.Compare(ordered, inCommitOrder, check); r.OrderViolations != 0 || r.Lost != 0 {
		t.Errorf("delivery in commit order: %+v, want no violation", r)
	}
	// Delivered in the order the COMMITs returned: the checker must see the violation.
	inReturnOrder := []*outbox.Message{ordered[0], second[0], second[1], ordered[3], first[0]}
	if r := outboxtest.Compare(ordered, inReturnOrder, check); r.OrderViolations == 0 {
		t.Errorf("delivery against commit order: %+v, want a violation", r)
	}
	// Within a transaction its events keep their order.
	swapped := []*outbox.Message{ordered[0], first[0], second[1], second[0], ordered[3]}
	if r := outboxtest.Compare(ordered, swapped, check); r.OrderViolations == 0 {
		t.Errorf("events of one transaction swapped: %+v, want a violation", r)
	}
}
