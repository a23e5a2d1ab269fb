package outbox_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

// lateNack holds back the relay's first nack until another claim of the same relay has taken
// the message again (its lease having expired), as a stalled worker would.
type lateNack struct {
	outbox.Store
	once      sync.Once
	reclaimed chan struct{}
	applied   chan struct{} // closed once the late nack reached the store
	first     atomic.Value  // token of the first claim
}

func (s *lateNack) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	msgs, err := s.Store.Claim(ctx, req)
	if len(msgs) > 0 && !s.first.CompareAndSwap(nil, req.Token) {
		s.once.Do(func() { close(s.reclaimed) }) // a later claim took the message again
	}
	return msgs, err
}

func (s *lateNack) Nack(ctx context.Context, token string, failures []outbox.Failure) (int, error) {
	if token == s.first.Load() {
		// The statement was sent in time and reaches the database late: it is applied even
		// though the relay has stopped waiting for it.
		select {
		case <-s.reclaimed:
		case <-time.After(5 * time.Second):
		}
		n, err := s.Store.Nack(context.WithoutCancel(ctx), token, failures)
		close(s.applied)
		return n, err
	}
	return s.Store.Nack(ctx, token, failures)
}

// Promise 6: an ack or nack counts only for the claim that leased the message. The relay's first
// claim fails to publish and its nack is delayed past the lease; the same relay claims and
// publishes the message again. The stale nack must neither release the second claim's lease
// (which would let a third claimer publish it once more) nor charge an attempt: the message is
// published once and the relay counts the stale settle.
func TestStaleSettleOfTheSameRelayIsIgnored(t *testing.T) {
	inner := memstore.New()
	st := &lateNack{Store: inner, reclaimed: make(chan struct{}), applied: make(chan struct{})}
	tr := memory.New()
	msgs := write(t, inner, 1, noKey)
	var calls atomic.Int64
	flaky := outbox.TransportFunc(func(ctx context.Context, batch []*outbox.Message) error {
		switch calls.Add(1) {
		case 1:
			return errors.New("broker hiccup") // the first publish fails: a nack follows
		case 2:
			// The second claim publishes while the first claim's nack lands.
			select {
			case <-st.applied:
			case <-time.After(5 * time.Second):
			}
		}
		return tr.Publish(ctx, batch)
	})
	r := startRelay(t, st, flaky, outbox.Config{Lease: 200 * time.Millisecond, PublishTimeout: 100 * time.Millisecond, Concurrency: 2})
	waitDelivered(t, tr, 1, 10*time.Second)
	waitPendingZero(t, inner)
	if s := r.Stats(); s.Stale != 1 {
		t.Fatalf("stats %+v: want the late nack counted as stale", s)
	}
	// A third claimer finds nothing: the message was acked by the claim that held it.
	got, err := inner.Claim(context.Background(), outbox.ClaimRequest{Token: "third", Limit: 10, Lease: time.Minute})
	if err != nil || len(got) != 0 {
		t.Fatalf("a third claim got %d message(s) (%v) after the relay published it", len(got), err)
	}
	stopRelay(t, r)
	if n := tr.Len(); n != 1 {
		t.Fatalf("published %d times, want once (message %s)", n, msgs[0].ID)
	}
}
