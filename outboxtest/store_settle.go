package outboxtest

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/txoutbox/outbox"
)

func (s *storeSuite) testAck(t *testing.T) {
	t.Run("AckedIsNotClaimedAgain", func(t *testing.T) {
		h := s.newStore(t)
		msgs := mustAdd(t, h, NewMessages(3, "T", "")...)
		a := owner("a")
		mustClaim(t, h.Store, outbox.ClaimRequest{Token: a, Lease: 200 * time.Millisecond})
		mustAck(t, h.Store, a, msgs[0].ID, msgs[2].ID)
		time.Sleep(300 * time.Millisecond) // let the lease lapse: only the unacked one comes back
		sameIDs(t, "claim after ack", mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("b")}), msgs[1].ID)
	})
	t.Run("OtherOwnersAckIgnored", func(t *testing.T) {
		h := s.newStore(t)
		msgs := mustAdd(t, h, NewMessages(1, "T", "")...)
		mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("a"), Lease: 200 * time.Millisecond})
		mustAck(t, h.Store, owner("b"), msgs[0].ID)
		time.Sleep(300 * time.Millisecond)
		sameIDs(t, "claim after a foreign ack", mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("c")}), msgs[0].ID)
	})
	t.Run("UnknownAndEmpty", func(t *testing.T) {
		h := s.newStore(t)
		mustAck(t, h.Store, owner("a"))
		mustAck(t, h.Store, owner("a"), uuid.NewString())
		mustNack(t, h.Store, owner("a"))
		mustNack(t, h.Store, owner("a"), outbox.Failure{ID: uuid.NewString(), Error: "x", Delay: 0})
	})
}

func (s *storeSuite) testNack(t *testing.T) {
	t.Run("RetryAtRespected", func(t *testing.T) {
		h := s.newStore(t)
		msgs := mustAdd(t, h, NewMessages(1, "T", "")...)
		a := owner("a")
		mustClaim(t, h.Store, outbox.ClaimRequest{Token: a})
		mustNack(t, h.Store, a, outbox.Failure{ID: msgs[0].ID, Error: "broker down", Delay: 700 * time.Millisecond})
		if got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: a}); len(got) != 0 {
			t.Fatalf("claimed %d messages before their retry time", len(got))
		}
		var got []*outbox.Message
		eventually(t, 5*time.Second, "the message to be due again", func() bool {
			got = mustClaim(t, h.Store, outbox.ClaimRequest{Token: a})
			return len(got) > 0
		})
		sameIDs(t, "claim after retry time", got, msgs[0].ID)
		if got[0].Attempts != 1 {
			t.Fatalf("attempts = %d after one nack, want 1", got[0].Attempts)
		}
		mustNack(t, h.Store, a, outbox.Failure{ID: msgs[0].ID, Error: "again", Delay: 0})
		got = mustClaim(t, h.Store, outbox.ClaimRequest{Token: a})
		if len(got) != 1 || got[0].Attempts != 2 {
			t.Fatalf("after a second nack got %d messages with attempts %v, want 1 with 2", len(got), got)
		}
	})
	t.Run("OtherOwnersNackIgnored", func(t *testing.T) {
		h := s.newStore(t)
		msgs := mustAdd(t, h, NewMessages(1, "T", "")...)
		a := owner("a")
		mustClaim(t, h.Store, outbox.ClaimRequest{Token: a, Lease: time.Minute})
		mustNack(t, h.Store, owner("b"), outbox.Failure{ID: msgs[0].ID, Error: "x", Dead: true})
		if got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("c")}); len(got) != 0 {
			t.Fatal("a foreign nack released the lease")
		}
		mustNack(t, h.Store, a, outbox.Failure{ID: msgs[0].ID, Error: "x", Delay: 0})
		got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("c")})
		if len(got) != 1 || got[0].Attempts != 1 {
			t.Fatalf("after the holder's nack got %v, want the message with attempts 1", got)
		}
	})
	t.Run("ManyInOneCall", func(t *testing.T) {
		h := s.newStore(t)
		msgs := mustAdd(t, h, NewMessages(50, "T", "")...)
		a := owner("a")
		mustClaim(t, h.Store, outbox.ClaimRequest{Token: a})
		var fails []outbox.Failure
		for _, m := range msgs[:25] {
			fails = append(fails, outbox.Failure{ID: m.ID, Error: "x", Delay: 0})
		}
		mustNack(t, h.Store, a, fails...)
		mustAck(t, h.Store, a, IDs(msgs[25:])...)
		sameIDs(t, "claim after nacking half", mustClaim(t, h.Store, outbox.ClaimRequest{Token: a}), IDs(msgs[:25])...)
	})
}

func (s *storeSuite) testDead(t *testing.T) {
	t.Run("NeverClaimed", func(t *testing.T) {
		h := s.newStore(t)
		msgs := mustAdd(t, h, NewMessages(2, "T", "")...)
		a := owner("a")
		mustClaim(t, h.Store, outbox.ClaimRequest{Token: a})
		mustNack(t, h.Store, a, outbox.Failure{ID: msgs[0].ID, Error: "poison", Dead: true}, outbox.Failure{ID: msgs[1].ID, Error: "x", Delay: 0})
		sameIDs(t, "claim after one went dead", mustClaim(t, h.Store, outbox.ClaimRequest{Token: a}), msgs[1].ID)
	})
	t.Run("ListRequeuePurge", func(t *testing.T) {
		if !s.f.Inspector {
			t.Skip("store has no Inspector")
		}
		h := s.newStore(t)
		poison := mustAdd(t, h, NewMessages(3, "POISON", "")...)
		other := mustAdd(t, h, NewMessages(1, "OTHER", "")...)
		a := owner("a")
		mustClaim(t, h.Store, outbox.ClaimRequest{Token: a})
		var fails []outbox.Failure
		for _, m := range append(poison, other...) {
			fails = append(fails, outbox.Failure{ID: m.ID, Error: "schema mismatch: " + m.Type, Dead: true})
		}
		mustNack(t, h.Store, a, fails...)
		in := inspector(t, h.Store)
		ctx := testCtx(t)

		dead, err := in.ListDead(ctx, outbox.DeadFilter{Type: "POISON"})
		if err != nil {
			t.Fatalf("list dead: %v", err)
		}
		if len(dead) != 3 {
			t.Fatalf("listed %d dead POISON messages, want 3", len(dead))
		}
		for i, d := range dead {
			if d.ID != poison[i].ID || d.LastError != "schema mismatch: POISON" || d.Attempts != 1 || d.DiedAt.IsZero() {
				t.Fatalf("dead letter %d = %+v, want id %s, error, 1 attempt, died at", i, d, poison[i].ID)
			}
		}
		if c := mustCounts(t, h.Store); c.Dead != 4 || c.Pending != 0 {
			t.Fatalf("counts %+v, want 4 dead and 0 pending", c)
		}

		n, err := in.Requeue(ctx, outbox.DeadFilter{IDs: []string{poison[0].ID}})
		if err != nil || n != 1 {
			t.Fatalf("requeue = %d, %v; want 1", n, err)
		}
		got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: a})
		sameIDs(t, "claim after requeue", got, poison[0].ID)
		if got[0].Attempts != 0 {
			t.Fatalf("requeued message has attempts %d, want 0", got[0].Attempts)
		}

		n, err = in.Purge(ctx, outbox.DeadFilter{Type: "POISON"})
		if err != nil || n != 2 {
			t.Fatalf("purge = %d, %v; want 2", n, err)
		}
		dead, err = in.ListDead(ctx, outbox.DeadFilter{})
		if err != nil || len(dead) != 1 || dead[0].ID != other[0].ID {
			t.Fatalf("after purge, dead = %v, %v; want only %s", dead, err, other[0].ID)
		}
		if dead, _ := in.ListDead(ctx, outbox.DeadFilter{Limit: 1}); len(dead) != 1 {
			t.Fatalf("list with limit 1 returned %d", len(dead))
		}
	})
}
