package outboxtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/memory"
)

// testRelay runs the real relay over the store: every message is published once, and in
// ordered mode each key's messages arrive in write order.
func (s *storeSuite) testRelay(t *testing.T) {
	t.Run("RunFailure", s.testRelayRunFailure)
	t.Run("Outage", s.testRelayOutage)
	t.Run("ClockSkew", s.testRelayClockSkew)
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("Ordered=%v", ordered), func(t *testing.T) {
			h := s.newStore(t)
			var written []*outbox.Message
			for k := range 10 {
				written = append(written, mustAdd(t, h, NewMessages(30, "T", fmt.Sprint("key-", k%5))...)...)
			}
			tr := memory.New()
			relay, err := outbox.NewRelay(h.Store, tr, outbox.Config{
				BatchSize: 25, Concurrency: 3, PollInterval: 20 * time.Millisecond, Lease: 10 * time.Second, Unordered: !ordered,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t)
			if err := relay.Start(ctx); err != nil {
				t.Fatal(err)
			}
			waitErr := tr.WaitFor(ctx, len(written))
			stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := relay.Stop(stopCtx); err != nil {
				t.Fatalf("stop: %v", err)
			}
			if waitErr != nil {
				t.Fatalf("published %d of %d: %v", tr.Len(), len(written), waitErr)
			}
			CheckDelivery(t, written, tr.Received(), DeliveryCheck{Ordered: ordered})
			if got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("after")}); len(got) != 0 {
				t.Fatalf("%d messages still claimable after the relay published everything", len(got))
			}
		})
	}
}

// testRelayRunFailure: an ordered run whose middle message fails once. The prefix is published
// once, the failed message is retried with one attempt charged, and the rest of its key is
// released without an attempt and published after it, in order; both when the transport keeps
// key order within a call (one call per run) and when it does not (one message per key per call).
func (s *storeSuite) testRelayRunFailure(t *testing.T) {
	for _, keepsOrder := range []bool{true, false} {
		t.Run(fmt.Sprintf("KeepsKeyOrder=%v", keepsOrder), func(t *testing.T) {
			h := s.newStore(t)
			run := mustAdd(t, h, NewMessages(5, "T", "run")...)
			other := mustAdd(t, h, NewMessages(3, "T", "other")...)
			tr := memory.New()
			var failed atomic.Bool
			failing := func(ctx context.Context, msgs []*outbox.Message) error {
				// Fail run[2] the first time a call carries it.
				if slices.ContainsFunc(msgs, func(m *outbox.Message) bool { return m.ID == run[2].ID }) && failed.CompareAndSwap(false, true) {
					tr.FailIDs(errors.New("rejected once"), run[2].ID)
					defer tr.Heal()
				}
				return tr.Publish(ctx, msgs)
			}
			var transport outbox.Transport = outbox.TransportFunc(failing)
			if keepsOrder {
				transport = keyOrdered{outbox.TransportFunc(failing)}
			}
			relay := startSuiteRelay(t, h.Store, transport, outbox.Config{
				PollInterval: 20 * time.Millisecond,
				Backoff:      outbox.Backoff{Initial: 50 * time.Millisecond, Max: 50 * time.Millisecond},
			})
			ctx := testCtx(t)
			if err := tr.WaitFor(ctx, len(run)+len(other)); err != nil {
				t.Fatalf("published %d of %d: %v", tr.Len(), len(run)+len(other), err)
			}
			stopSuiteRelay(t, relay)
			var got []*outbox.Message
			for _, m := range tr.Received() {
				if m.Key == "run" {
					got = append(got, m)
				}
			}
			sameIDs(t, "the run as published", got, IDs(run)...)
			for i, m := range got {
				want := 0
				if i == 2 {
					want = 1
				}
				if m.Attempts != want {
					t.Errorf("message %d of the run published with %d attempts charged, want %d", i, m.Attempts, want)
				}
			}
			if st := relay.Stats(); st.Failed != 1 || st.Dead != 0 || st.Released != 2 {
				t.Errorf("stats %+v: want 1 failed, 0 dead, 2 released", st)
			}
		})
	}
}

// keyOrdered declares that a transport keeps per-key order within a call.
type keyOrdered struct{ outbox.Transport }

func (keyOrdered) KeepsKeyOrder() bool { return true }

// testRelayOutage: while the transport fails every call as unavailable, no attempt is charged
// (with MaxAttempts 2 every message would otherwise be dead within the outage), and delivery
// resumes once it is back.
func (s *storeSuite) testRelayOutage(t *testing.T) {
	h := s.newStore(t)
	written := mustAdd(t, h, NewMessages(30, "T", "")...)
	tr := memory.New()
	tr.FailAll(outbox.Unavailable(errors.New("broker unreachable")))
	var calls atomic.Int64
	counting := outbox.TransportFunc(func(ctx context.Context, msgs []*outbox.Message) error {
		calls.Add(1)
		return tr.Publish(ctx, msgs)
	})
	relay := startSuiteRelay(t, h.Store, counting, outbox.Config{
		MaxAttempts: 2, PollInterval: 20 * time.Millisecond,
		Backoff: outbox.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond},
	})
	eventually(t, 10*time.Second, "the relay to probe the unavailable transport a few times", func() bool {
		return calls.Load() >= 4
	})
	if st := relay.Stats(); st.TransportDownSince.IsZero() || st.Failed != 0 || st.Dead != 0 {
		t.Fatalf("stats during the outage %+v: want the transport down, nothing failed or dead", st)
	}
	tr.Heal()
	ctx := testCtx(t)
	if err := tr.WaitFor(ctx, len(written)); err != nil {
		t.Fatalf("published %d of %d after the outage: %v", tr.Len(), len(written), err)
	}
	stopSuiteRelay(t, relay)
	CheckDelivery(t, written, tr.Received(), DeliveryCheck{})
	for _, m := range tr.Received() {
		if m.Attempts != 0 {
			t.Fatalf("message %s published with %d attempts charged by an outage", m.ID, m.Attempts)
		}
	}
	if st := relay.Stats(); !st.TransportDownSince.IsZero() || st.Failed != 0 || st.Dead != 0 {
		t.Fatalf("stats after the outage %+v", st)
	}
}

// testRelayClockSkew: retry times are the store's. A relay whose clock is ten minutes off
// either way neither burns a message's attempts early nor delays its retry.
func (s *storeSuite) testRelayClockSkew(t *testing.T) {
	for _, skew := range []time.Duration{-10 * time.Minute, 10 * time.Minute} {
		t.Run(fmt.Sprint("Skew=", skew), func(t *testing.T) {
			h := s.newStore(t)
			written := mustAdd(t, h, NewMessages(1, "T", "")...)
			tr := memory.New()
			// Every publish fails for 1.5 s after the first; retries 1 s apart, 3 attempts: the
			// third attempt, at 2 s, succeeds unless retries come early (dead) or late (timeout).
			var firstTry atomic.Int64
			flaky := outbox.TransportFunc(func(ctx context.Context, msgs []*outbox.Message) error {
				firstTry.CompareAndSwap(0, time.Now().UnixNano())
				if time.Since(time.Unix(0, firstTry.Load())) < 1500*time.Millisecond {
					be := outbox.NewBatchError()
					for _, m := range msgs {
						be.Add(m.ID, errors.New("consumer not ready"))
					}
					return be
				}
				return tr.Publish(ctx, msgs)
			})
			relay := startSuiteRelay(t, h.Store, flaky, outbox.Config{
				MaxAttempts: 3, PollInterval: 20 * time.Millisecond,
				Backoff: outbox.Backoff{Initial: time.Second, Max: time.Second, Multiplier: 1, Jitter: -1},
				Clock:   func() time.Time { return time.Now().Add(skew) },
			})
			ctx, cancel := context.WithTimeout(testCtx(t), 15*time.Second)
			defer cancel()
			err := tr.WaitFor(ctx, 1)
			st := relay.Stats()
			stopSuiteRelay(t, relay)
			if err != nil || st.Dead != 0 {
				t.Fatalf("with the relay's clock %v off: published %d of 1 (%v), stats %+v", skew, tr.Len(), err, st)
			}
			CheckDelivery(t, written, tr.Received(), DeliveryCheck{})
		})
	}
}
