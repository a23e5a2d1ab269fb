package outboxtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/memory"
)

// testCleanStop: after a clean stop (the relay stopped, the store closed) the next process
// claims nothing that was acknowledged (promise 3: a clean stop publishes again only what was
// published and not acknowledged), and everything that was not is still there.
func (s *storeSuite) testCleanStop(t *testing.T) {
	t.Run("AfterRelay", func(t *testing.T) {
		h := s.newStore(t)
		if h.Restart == nil {
			t.Skip("the harness has no Restart")
		}
		var written []*outbox.Message
		for k := range 20 {
			written = append(written, mustAdd(t, h, NewMessages(10, "T", fmt.Sprint("key-", k%3))...)...)
		}
		tr := memory.New()
		relay := startSuiteRelay(t, h.Store, tr, outbox.Config{BatchSize: 50, Concurrency: 2, PollInterval: 20 * time.Millisecond})
		if err := tr.WaitFor(testCtx(t), len(written)); err != nil {
			t.Fatalf("published %d of %d: %v", tr.Len(), len(written), err)
		}
		stopSuiteRelay(t, relay) // every publish acknowledged
		next := h.Restart(t)
		got := mustClaim(t, next, outbox.ClaimRequest{Token: owner("next"), Limit: 1000})
		if len(got) > 0 {
			t.Fatalf("after a clean stop the next store handed out %d of %d acknowledged messages again", len(got), len(written))
		}
	})
	// A transaction only partly acknowledged at the stop: its acknowledged messages are not
	// handed out again, its released ones and those never handed out are.
	t.Run("PartlyAcked", func(t *testing.T) {
		h := s.newStore(t)
		if h.Restart == nil {
			t.Skip("the harness has no Restart")
		}
		partly := mustAdd(t, h, NewMessages(10, "T", "")...)
		whole := mustAdd(t, h, NewMessages(2, "T", "")...)
		token := owner("first")
		if got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: token, Limit: 100}); len(got) != len(partly)+len(whole) {
			t.Fatalf("claimed %d, want %d", len(got), len(partly)+len(whole))
		}
		acked := append(IDs(partly[:5]), IDs(whole)...)
		if n := mustAck(t, h.Store, token, acked...); n != len(acked) {
			t.Fatalf("ack settled %d of %d", n, len(acked))
		}
		var released []outbox.Failure
		for _, m := range partly[5:] {
			released = append(released, outbox.Failure{ID: m.ID, Release: true}) // as a stopping relay releases its claim
		}
		mustNack(t, h.Store, token, released...)
		never := mustAdd(t, h, NewMessages(1, "T", "")...)
		next := h.Restart(t)
		got := map[string]bool{}
		for _, m := range mustClaim(t, next, outbox.ClaimRequest{Token: owner("next"), Limit: 100}) {
			got[m.ID] = true
		}
		for _, id := range acked {
			if got[id] {
				t.Errorf("acknowledged message %s handed out again after a clean stop", id)
			}
		}
		for _, id := range append(IDs(partly[5:]), never[0].ID) {
			if !got[id] {
				t.Errorf("unacknowledged message %s not claimable after the stop", id)
			}
		}
	})
}

// testLostStream: a store whose stream is cut while its other connections work no longer holds
// the stream. Once a standby has taken it over and streamed the same messages, the old store
// hands out none of them, and its settles of what it had handed out change nothing (a failed
// publish is not written behind the standby's back, to be delivered a second time).
func (s *storeSuite) testLostStream(t *testing.T) {
	h := s.newStore(t)
	if h.CutStream == nil || h.Standby == nil {
		t.Skip("the store does not stream (the harness has no CutStream and Standby)")
	}
	written := mustAdd(t, h, NewMessages(10, "T", "")...)
	oldToken := owner("old")
	old := mustClaim(t, h.Store, outbox.ClaimRequest{Token: oldToken, Limit: 5})
	if len(old) != 5 {
		t.Fatalf("the holder claimed %d, want 5", len(old))
	}
	h.CutStream(t)
	standby := h.Standby(t)
	newToken := owner("new")
	fresh := mustClaim(t, standby, outbox.ClaimRequest{Token: newToken, Limit: 100})
	if len(fresh) != len(written) {
		t.Fatalf("the standby claimed %d, want %d", len(fresh), len(written))
	}
	byStandby := map[string]bool{}
	for _, m := range fresh {
		byStandby[m.ID] = true
	}
	both := 0
	for _, m := range mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("old-2"), Limit: 100}) {
		if byStandby[m.ID] {
			both++
		}
	}
	if both > 0 {
		t.Errorf("after losing the stream the old store handed out %d messages the standby holds", both)
	}
	failures := make([]outbox.Failure, len(old))
	for i, m := range old {
		failures[i] = outbox.Failure{ID: m.ID, Error: "broker said no"}
	}
	// Refused or ignored: either way nothing may change.
	_, _ = h.Store.Nack(testCtx(t), oldToken, failures)
	if n := mustAck(t, standby, newToken, IDs(fresh)...); n != len(fresh) {
		t.Fatalf("the standby's ack settled %d of %d", n, len(fresh))
	}
	if in, ok := standby.(outbox.Inspector); ok {
		c, err := in.Counts(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if c.Pending != 0 || c.Dead != 0 {
			t.Errorf("after the standby acknowledged everything: %d pending, %d dead; the old store's settles wrote them back", c.Pending, c.Dead)
		}
	}
	if got := mustClaim(t, standby, outbox.ClaimRequest{Token: owner("after"), Limit: 100}); len(got) != 0 {
		t.Errorf("the standby handed out %d messages again after acknowledging them all", len(got))
	}
}
