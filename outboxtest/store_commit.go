package outboxtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/memory"
)

// commitWindow is how long the commit-order case gives a second writer of a key to commit
// before the first writer commits. A store that serialises writers of one key keeps the second
// waiting for the whole window; one that does not lets it commit within it.
const commitWindow = 300 * time.Millisecond

// testOrderedCommitOrder: two transactions write one key, and the one that wrote first tries to
// commit last. Whatever the store does (make the second writer wait, or order by commit), an
// ordered relay must publish the key in the order the commits happened, both while it runs
// alongside the writers and when it finds their messages as a backlog afterwards.
func (s *storeSuite) testOrderedCommitOrder(t *testing.T) {
	if s.newStore(t).AddOpen == nil {
		t.Skip("the harness cannot hold a write transaction open")
	}
	for _, live := range []bool{true, false} {
		name := "Backlog"
		if live {
			name = "RelayRunning"
		}
		t.Run(name, func(t *testing.T) {
			h := s.newStore(t)
			ctx := testCtx(t)
			tr := memory.New()
			var relay *outbox.Relay
			if live {
				relay = startSuiteRelay(t, h.Store, tr, outbox.Config{PollInterval: 20 * time.Millisecond})
			}
			const rounds = 4
			want := map[string][]string{} // key -> IDs in commit order
			for round := range rounds {
				key := fmt.Sprint("commit-order-", round)
				first, second := NewMessages(1, "FIRST", key), NewMessages(1, "SECOND", key)
				commit, err := h.AddOpen(ctx, first...)
				if err != nil {
					t.Fatalf("open write: %v", err)
				}
				done := make(chan error, 1)
				go func() { done <- h.Add(ctx, second...) }()
				secondFirst := false
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("second writer: %v", err)
					}
					secondFirst = true
				case <-time.After(commitWindow):
				}
				if err := commit(); err != nil {
					t.Fatalf("commit first writer: %v", err)
				}
				if !secondFirst {
					if err := <-done; err != nil {
						t.Fatalf("second writer: %v", err)
					}
				}
				if secondFirst {
					want[key] = []string{second[0].ID, first[0].ID}
				} else {
					want[key] = []string{first[0].ID, second[0].ID}
				}
			}
			if !live {
				relay = startSuiteRelay(t, h.Store, tr, outbox.Config{PollInterval: 20 * time.Millisecond})
			}
			if err := tr.WaitFor(ctx, 2*rounds); err != nil {
				t.Fatalf("published %d of %d: %v", tr.Len(), 2*rounds, err)
			}
			stopSuiteRelay(t, relay)
			got := map[string][]string{}
			for _, m := range tr.Received() {
				got[m.Key] = append(got[m.Key], m.ID)
			}
			for key, ids := range want {
				if fmt.Sprint(got[key]) != fmt.Sprint(ids) {
					t.Errorf("key %s published as %v, committed as %v", key, got[key], ids)
				}
			}
		})
	}
}

// startSuiteRelay starts a relay over st and registers its stop.
func startSuiteRelay(t *testing.T, st outbox.Store, tr outbox.Transport, cfg outbox.Config) *outbox.Relay {
	t.Helper()
	relay, err := outbox.NewRelay(st, tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopSuiteRelay(t, relay) })
	return relay
}

func stopSuiteRelay(t *testing.T, relay *outbox.Relay) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := relay.Stop(ctx); err != nil {
		t.Errorf("stop relay: %v", err)
	}
}
