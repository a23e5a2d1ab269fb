package outboxtest

import (
	"context"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

func (s *storeSuite) testNotifier(t *testing.T) {
	if !s.f.Notifier {
		t.Skip("store has no Notifier")
	}
	h := s.newStore(t)
	n, ok := h.Store.(outbox.Notifier)
	if !ok {
		t.Fatalf("store %T does not implement outbox.Notifier although the features say so", h.Store)
	}
	ctx, cancel := context.WithCancel(context.Background())
	signals, err := n.Listen(ctx)
	if err != nil {
		cancel()
		t.Fatalf("listen: %v", err)
	}
	drain := func(quiet time.Duration) {
		for {
			select {
			case <-signals:
			case <-time.After(quiet):
				return
			}
		}
	}
	drain(300 * time.Millisecond) // a listener may signal once when it connects

	if s.f.Transactions {
		if err := h.AddRolledBack(testCtx(t), NewMessages(1, "T", "")...); err != nil {
			t.Fatalf("add rolled back: %v", err)
		}
		select {
		case <-signals:
			t.Fatal("a rolled-back write sent a notification")
		case <-time.After(500 * time.Millisecond):
		}
	}

	mustAdd(t, h, NewMessages(1, "T", "")...)
	select {
	case <-signals:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification within 5s of a committed write")
	}

	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, open := <-signals:
			if !open {
				return
			}
		case <-deadline:
			t.Fatal("the notification channel was not closed after its context ended")
		}
	}
}

func (s *storeSuite) testInspector(t *testing.T) {
	if !s.f.Inspector {
		t.Skip("store has no Inspector")
	}
	h := s.newStore(t)
	if c := mustCounts(t, h.Store); c != (outbox.Counts{}) {
		t.Fatalf("counts of an empty store = %+v", c)
	}
	old := NewMessages(1, "T", "")[0]
	old.CreatedAt = time.Now().Add(-time.Hour)
	mustAdd(t, h, old)
	mustAdd(t, h, NewMessages(4, "T", "")...)
	a := owner("a")
	got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: a, Limit: 2})
	mustNack(t, h.Store, a, outbox.Failure{ID: got[1].ID, Error: "x", Dead: true})
	c := mustCounts(t, h.Store)
	if c.Pending != 4 || c.Dead != 1 {
		t.Fatalf("counts = %+v, want 4 pending (leased ones included) and 1 dead", c)
	}
	if !c.OldestPending.Equal(old.CreatedAt) {
		t.Fatalf("oldest pending = %v, want %v", c.OldestPending, old.CreatedAt)
	}
}

func (s *storeSuite) testRetention(t *testing.T) {
	if !s.f.Retention {
		t.Skip("store does not keep delivered messages")
	}
	h := s.newStore(t)
	ret, ok := h.Store.(outbox.Retention)
	if !ok {
		t.Fatalf("store %T does not implement outbox.Retention although the features say so", h.Store)
	}
	msgs := mustAdd(t, h, NewMessages(5, "T", "")...)
	a := owner("a")
	mustClaim(t, h.Store, outbox.ClaimRequest{Token: a})
	mustAck(t, h.Store, a, IDs(msgs)...)
	if s.f.Inspector {
		if c := mustCounts(t, h.Store); c.Delivered != 5 || c.Pending != 0 {
			t.Fatalf("counts after acking 5 = %+v, want 5 delivered", c)
		}
	}
	ctx := testCtx(t)
	if n, err := ret.DeleteDelivered(ctx, time.Hour, 10); err != nil || n != 0 {
		t.Fatalf("deleting messages delivered over an hour ago = %d, %v; want 0", n, err)
	}
	// A negative age puts the cutoff in the future: everything delivered so far is older.
	for _, want := range []int{2, 2, 1, 0} {
		if n, err := ret.DeleteDelivered(ctx, -time.Second, 2); err != nil || n != want {
			t.Fatalf("delete delivered (limit 2) = %d, %v; want %d", n, err, want)
		}
	}
	if s.f.Inspector {
		if c := mustCounts(t, h.Store); c.Delivered != 0 {
			t.Fatalf("delivered after retention = %d, want 0", c.Delivered)
		}
	}
	if got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: a}); len(got) != 0 {
		t.Fatalf("delivered messages came back: %v", IDs(got))
	}
}

func (s *storeSuite) testTransactions(t *testing.T) {
	if !s.f.Transactions {
		t.Skip("store writes are not transactional")
	}
	h := s.newStore(t)
	if err := h.AddRolledBack(testCtx(t), NewMessages(3, "T", "")...); err != nil {
		t.Fatalf("add rolled back: %v", err)
	}
	kept := mustAdd(t, h, NewMessages(1, "T", "")...)
	sameIDs(t, "claim after a rollback", mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("a")}), kept[0].ID)
	if s.f.Inspector {
		if c := mustCounts(t, h.Store); c.Pending != 1 {
			t.Fatalf("pending after a rolled-back write = %d, want 1", c.Pending)
		}
	}
}
