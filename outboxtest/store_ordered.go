package outboxtest

import (
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

func ordered(token string) outbox.ClaimRequest {
	return outbox.ClaimRequest{Token: token, Ordered: true}
}

func (s *storeSuite) testOrdered(t *testing.T) {
	t.Run("Runs", s.testOrderedRuns)
	t.Run("LeasedHeadBlocksItsKey", s.testOrderedLeasedHead)
	t.Run("RetryingHeadBlocksItsKey", s.testOrderedRetryingHead)
	t.Run("ReleasedTailWaitsForItsDelay", s.testOrderedReleasedTail)
	t.Run("DeadHeadBlocksItsKey", s.testOrderedDeadHead)
	t.Run("CommitOrder", s.testOrderedCommitOrder)
}

// A key's consecutive messages come out together, in order, within the limit; unkeyed ones
// are not ordered.
func (s *storeSuite) testOrderedRuns(t *testing.T) {
	h := s.newStore(t)
	k1 := mustAdd(t, h, NewMessages(3, "T", "k1")...)
	k2 := mustAdd(t, h, NewMessages(2, "T", "k2")...)
	free := mustAdd(t, h, NewMessages(2, "T", "")...)
	a := owner("a")
	sameIDs(t, "ordered claim", mustClaim(t, h.Store, ordered(a)),
		k1[0].ID, k1[1].ID, k1[2].ID, k2[0].ID, k2[1].ID, free[0].ID, free[1].ID)

	h = s.newStore(t)
	k := mustAdd(t, h, NewMessages(5, "T", "k")...)
	req := ordered(owner("b"))
	req.Limit = 3
	sameIDs(t, "ordered claim with limit 3", mustClaim(t, h.Store, req), k[0].ID, k[1].ID, k[2].ID)
	// The rest of the key waits behind the leased run.
	if got := mustClaim(t, h.Store, ordered(owner("c"))); len(got) != 0 {
		t.Fatalf("claimed %v while earlier messages of their key were leased", IDs(got))
	}
}

func (s *storeSuite) testOrderedLeasedHead(t *testing.T) {
	h := s.newStore(t)
	k1 := mustAdd(t, h, NewMessages(2, "T", "k1")...)
	k2 := mustAdd(t, h, NewMessages(2, "T", "k2")...)
	a, b := owner("a"), owner("b")
	req := ordered(a)
	req.Limit = 1
	sameIDs(t, "first claim", mustClaim(t, h.Store, req), k1[0].ID)
	// k1's head is leased: only k2 comes out, whole.
	sameIDs(t, "second claim", mustClaim(t, h.Store, ordered(b)), k2[0].ID, k2[1].ID)
	mustAck(t, h.Store, a, k1[0].ID)
	sameIDs(t, "after acking k1's head", mustClaim(t, h.Store, ordered(a)), k1[1].ID)
	// Unordered claims ignore keys.
	h = s.newStore(t)
	k := mustAdd(t, h, NewMessages(2, "T", "k")...)
	req.Token = owner("c")
	mustClaim(t, h.Store, req)
	sameIDs(t, "unordered claim", mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("d")}), k[1].ID)
}

func (s *storeSuite) testOrderedRetryingHead(t *testing.T) {
	h := s.newStore(t)
	k1 := mustAdd(t, h, NewMessages(2, "T", "k1")...)
	k2 := mustAdd(t, h, NewMessages(1, "T", "k2")...)
	a := owner("a")
	mustClaim(t, h.Store, ordered(a))
	mustNack(t, h.Store, a, outbox.Failure{ID: k1[0].ID, Error: "x", Delay: time.Hour},
		outbox.Failure{ID: k1[1].ID, Release: true})
	mustAck(t, h.Store, a, k2[0].ID)
	if got := mustClaim(t, h.Store, ordered(owner("b"))); len(got) != 0 {
		t.Fatalf("claimed %v while k1's head waits for its retry", IDs(got))
	}
}

// A run whose middle failed: the prefix is acked, the failed message and the released rest come
// back in order once the failed one is due; the release charged no attempt.
func (s *storeSuite) testOrderedReleasedTail(t *testing.T) {
	h := s.newStore(t)
	k := mustAdd(t, h, NewMessages(4, "T", "k")...)
	a := owner("a")
	sameIDs(t, "run", mustClaim(t, h.Store, ordered(a)), IDs(k)...)
	mustAck(t, h.Store, a, k[0].ID)
	const delay = 600 * time.Millisecond
	released := time.Now()
	mustNack(t, h.Store, a,
		outbox.Failure{ID: k[1].ID, Error: "broker rejected it", Delay: delay},
		outbox.Failure{ID: k[2].ID, Release: true, Delay: delay},
		outbox.Failure{ID: k[3].ID, Release: true, Delay: delay})
	if got := mustClaim(t, h.Store, ordered(owner("b"))); len(got) != 0 && time.Since(released) < delay {
		t.Fatalf("claimed %v before the failed head's retry time", IDs(got))
	}
	var got []*outbox.Message
	eventually(t, 10*time.Second, "the failed run to be due again", func() bool {
		got = mustClaim(t, h.Store, ordered(owner("c")))
		return len(got) > 0
	})
	sameIDs(t, "the run after its retry time", got, k[1].ID, k[2].ID, k[3].ID)
	if got[0].Attempts != 1 || got[1].Attempts != 0 || got[2].Attempts != 0 {
		t.Fatalf("attempts = %d, %d, %d; want 1 for the failed message and 0 for the released ones",
			got[0].Attempts, got[1].Attempts, got[2].Attempts)
	}
}

func (s *storeSuite) testOrderedDeadHead(t *testing.T) {
	h := s.newStore(t)
	k := mustAdd(t, h, NewMessages(2, "T", "k")...)
	other := mustAdd(t, h, NewMessages(1, "T", "other")...)
	a := owner("a")
	mustClaim(t, h.Store, ordered(a))
	mustNack(t, h.Store, a, outbox.Failure{ID: k[0].ID, Error: "poison", Dead: true}, outbox.Failure{ID: k[1].ID, Release: true})
	mustAck(t, h.Store, a, other[0].ID)
	if got := mustClaim(t, h.Store, ordered(a)); len(got) != 0 {
		t.Fatalf("claimed %v behind a dead head", IDs(got))
	}
	if !s.f.Inspector {
		return
	}
	if n, err := inspector(t, h.Store).Purge(testCtx(t), outbox.DeadFilter{IDs: []string{k[0].ID}}); err != nil || n != 1 {
		t.Fatalf("purge = %d, %v", n, err)
	}
	sameIDs(t, "after purging the dead head", mustClaim(t, h.Store, ordered(a)), k[1].ID)
}
