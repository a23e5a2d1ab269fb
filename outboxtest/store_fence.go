package outboxtest

import (
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

// testFencing: an ack or nack counts only for the claim that leased the message. A relay's
// earlier claim whose lease expired, even under the same owner, settles nothing, is not counted,
// and cannot hand the message to a third claimer while the current claim publishes it.
func (s *storeSuite) testFencing(t *testing.T) {
	h := s.newStore(t)
	msgs := mustAdd(t, h, NewMessages(2, "T", "")...)
	relay := owner("relay")
	first, second := relay+"/claim.1", relay+"/claim.2"
	mustClaim(t, h.Store, outbox.ClaimRequest{Token: first, Lease: 300 * time.Millisecond})
	var got []*outbox.Message
	eventually(t, 10*time.Second, "the first claim's lease to expire", func() bool {
		got = mustClaim(t, h.Store, outbox.ClaimRequest{Token: second})
		return len(got) > 0
	})
	sameIDs(t, "claim after the lease expired", got, IDs(msgs)...)

	if n := mustNack(t, h.Store, first, outbox.Failure{ID: msgs[0].ID, Error: "late nack"}); n != 0 {
		t.Fatalf("a stale nack settled %d message(s), want 0", n)
	}
	if n := mustNack(t, h.Store, first, outbox.Failure{ID: msgs[0].ID, Release: true}); n != 0 {
		t.Fatalf("a stale release settled %d message(s), want 0", n)
	}
	if n := mustAck(t, h.Store, first, msgs[1].ID); n != 0 {
		t.Fatalf("a stale ack settled %d message(s), want 0", n)
	}
	if got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("third")}); len(got) != 0 {
		t.Fatalf("a third claimer got %v while the current claim holds them", IDs(got))
	}
	if n := mustAck(t, h.Store, second, IDs(msgs)...); n != 2 {
		t.Fatalf("the current claim's ack settled %d message(s), want 2", n)
	}
	if n := mustAck(t, h.Store, second, IDs(msgs)...); n != 0 {
		t.Fatalf("acking again settled %d message(s), want 0", n)
	}
	if got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("after")}); len(got) != 0 {
		t.Fatalf("claimed %v after they were acked", IDs(got))
	}
}
