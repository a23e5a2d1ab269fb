package outboxtest

import (
	"testing"
	"time"

	"github.com/txoutbox/outbox/core"
)

func (s *storeSuite) testOrdered(t *testing.T) {
	h := s.newStore(t)
	k1 := mustAdd(t, h, NewMessages(3, "T", "k1")...)
	k2 := mustAdd(t, h, NewMessages(2, "T", "k2")...)
	free := mustAdd(t, h, NewMessages(2, "T", "")...)
	a, b := owner("a"), owner("b")
	ordered := func(o string) core.ClaimRequest { return core.ClaimRequest{Owner: o, Ordered: true} }

	// Only the head of each key comes out; unkeyed messages are not ordered.
	sameIDs(t, "first ordered claim", mustClaim(t, h.Store, ordered(a)), k1[0].ID, k2[0].ID, free[0].ID, free[1].ID)
	// A leased head blocks the rest of its key for every claimer.
	if got := mustClaim(t, h.Store, ordered(b)); len(got) != 0 {
		t.Fatalf("claimed %v while the heads of their keys were leased", IDs(got))
	}
	// Acking a head releases the next message of that key only.
	mustAck(t, h.Store, a, k2[0].ID, free[0].ID, free[1].ID)
	sameIDs(t, "after acking k2's head", mustClaim(t, h.Store, ordered(b)), k2[1].ID)
	// A head waiting for a retry blocks its own key, not others.
	mustNack(t, h.Store, a, core.Failure{ID: k1[0].ID, Error: "x", RetryAt: time.Now().Add(time.Hour)})
	mustAck(t, h.Store, b, k2[1].ID)
	if got := mustClaim(t, h.Store, ordered(b)); len(got) != 0 {
		t.Fatalf("claimed %v while k1's head waits for its retry", IDs(got))
	}
	// Unordered claims ignore keys.
	sameIDs(t, "unordered claim", mustClaim(t, h.Store, core.ClaimRequest{Owner: a}), k1[1].ID, k1[2].ID)
	mustNack(t, h.Store, a, core.Failure{ID: k1[1].ID, Error: "x", RetryAt: time.Now()}, core.Failure{ID: k1[2].ID, Error: "x", RetryAt: time.Now()})

	t.Run("DeadHeadBlocksItsKey", func(t *testing.T) {
		h := s.newStore(t)
		k := mustAdd(t, h, NewMessages(2, "T", "k")...)
		other := mustAdd(t, h, NewMessages(1, "T", "other")...)
		a := owner("a")
		mustClaim(t, h.Store, ordered(a))
		mustNack(t, h.Store, a, core.Failure{ID: k[0].ID, Error: "poison", Dead: true})
		mustAck(t, h.Store, a, other[0].ID)
		if got := mustClaim(t, h.Store, ordered(a)); len(got) != 0 {
			t.Fatalf("claimed %v behind a dead head", IDs(got))
		}
		if !s.f.Inspector {
			return
		}
		if n, err := inspector(t, h.Store).Purge(testCtx(t), core.DeadFilter{IDs: []string{k[0].ID}}); err != nil || n != 1 {
			t.Fatalf("purge = %d, %v", n, err)
		}
		sameIDs(t, "after purging the dead head", mustClaim(t, h.Store, ordered(a)), k[1].ID)
	})
}
