package dedup_test

import (
	"context"
	"fmt"
	memstore "github.com/txoutbox/outbox/store/memory"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/middleware/dedup"
	"github.com/txoutbox/outbox/middleware/retry"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/memory"
)

// TestLostAckAcrossRelays is the reason dedup exists. Relay A publishes a message but every ack
// it sends fails, so the message's lease expires and relay B claims it again. Without dedup the
// broker receives it twice; with dedup over a shared Redis, B skips it, acks it, and the broker
// receives it once.
func TestLostAckAcrossRelays(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dedup     bool
		published int
	}{
		{"without dedup the message is published twice", false, 2},
		{"with dedup it is published once", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			var prefix string
			if tc.dedup {
				_, prefix = redisStore(t, redisClient(t))
			}
			// Each relay has its own client, as two processes would.
			relayMiddleware := func() []outbox.Middleware {
				if !tc.dedup {
					return nil
				}
				s, err := dedup.NewRedisStore(dedup.RedisConfig{Client: redisClient(t), Prefix: prefix})
				if err != nil {
					t.Fatal(err)
				}
				mw, err := dedup.Config{Store: s}.Middleware()
				if err != nil {
					t.Fatal(err)
				}
				return []outbox.Middleware{mw}
			}

			store := memstore.New()
			broker := memory.New()
			if err := store.Add(ctx, outboxtest.NewMessages(1, "ORDER_PLACED", "order-1")...); err != nil {
				t.Fatal(err)
			}
			cfg := outbox.Config{
				Lease:          600 * time.Millisecond,
				PublishTimeout: 200 * time.Millisecond,
				PollInterval:   50 * time.Millisecond,
				Concurrency:    1,
			}

			ackless := outboxtest.NewFaultyStore(store, 1)
			ackless.SetFailRates(0, 1, 0) // every ack of relay A fails
			cfgA := cfg
			cfgA.Owner, cfgA.Middleware = "relay-a", relayMiddleware()
			a, err := outbox.NewRelay(ackless, broker, cfgA)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if err := broker.WaitFor(ctx, 1); err != nil {
				t.Fatal(err)
			}
			// Stop returns once A gave up acking: by then the lease has run out.
			if err := a.Stop(ctx); err != nil {
				t.Fatal(err)
			}

			cfgB := cfg
			cfgB.Owner, cfgB.Middleware = "relay-b", relayMiddleware()
			b, err := outbox.NewRelay(store, broker, cfgB)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Start(ctx); err != nil {
				t.Fatal(err)
			}
			waitDrained(ctx, t, store)
			if err := b.Stop(ctx); err != nil {
				t.Fatal(err)
			}

			if got := broker.Len(); got != tc.published {
				t.Fatalf("broker received the message %d times, want %d", got, tc.published)
			}
			if got := b.Stats().Published; got != 1 {
				t.Errorf("relay B acknowledged %d messages, want 1", got)
			}
		})
	}
}

// waitDrained waits until the store holds no undelivered message.
func waitDrained(ctx context.Context, t *testing.T, store outbox.Inspector) {
	t.Helper()
	for {
		c, err := store.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Pending == 0 && c.Dead == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("store not drained: %+v", c)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lossyAcks loses the first ack of about one message in rate: Ack reports success but the
// store never hears of it, as when the connection drops after the broker took the message.
type lossyAcks struct {
	outbox.Store
	rate float64

	mu   sync.Mutex
	rng  *rand.Rand
	lost map[string]bool
}

func (s *lossyAcks) Ack(ctx context.Context, token string, ids []string) (int, error) {
	s.mu.Lock()
	keep := ids[:0:0]
	for _, id := range ids {
		if !s.lost[id] && s.rng.Float64() < s.rate {
			s.lost[id] = true
			continue
		}
		keep = append(keep, id)
	}
	s.mu.Unlock()
	if len(keep) == 0 {
		return len(ids), nil // as a relay that died after publishing sees it
	}
	n, err := s.Store.Ack(ctx, token, keep)
	return n + len(ids) - len(keep), err
}

func (s *lossyAcks) lostCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lost)
}

// TestNoDuplicatesUnderFaults runs two relays side by side over one store, with retry inside
// dedup, a transport that fails a tenth of the messages of each batch and a store that loses a
// fifth of the acks. With dedup every message reaches the broker exactly once; without it, each
// lost ack is a duplicate (the control that shows the faults bite).
func TestNoDuplicatesUnderFaults(t *testing.T) {
	for _, withDedup := range []bool{false, true} {
		t.Run(fmt.Sprintf("dedup=%v", withDedup), func(t *testing.T) { testUnderFaults(t, withDedup) })
	}
}

func testUnderFaults(t *testing.T, withDedup bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var prefix string
	if withDedup {
		_, prefix = redisStore(t, redisClient(t))
	}

	store := memstore.New()
	lossy := &lossyAcks{Store: store, rate: 0.2, rng: rand.New(rand.NewPCG(1, 2)), lost: map[string]bool{}}
	broker := memory.New()
	faulty := outboxtest.NewFaultyTransport(broker, 3)
	faulty.SetPartialRate(0.1)

	const n = 300
	if err := store.Add(ctx, outboxtest.NewMessages(n, "ORDER_PLACED", "")...); err != nil {
		t.Fatal(err)
	}
	var relays []*outbox.Relay
	for _, owner := range []string{"relay-a", "relay-b"} {
		rt, err := retry.Config{MaxRetries: 1, Backoff: outbox.Backoff{Initial: time.Millisecond, Max: time.Millisecond}}.Middleware()
		if err != nil {
			t.Fatal(err)
		}
		mws := []outbox.Middleware{rt}
		if withDedup {
			s, err := dedup.NewRedisStore(dedup.RedisConfig{Client: redisClient(t), Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			dd, err := dedup.Config{Store: s}.Middleware()
			if err != nil {
				t.Fatal(err)
			}
			mws = []outbox.Middleware{dd, rt}
		}
		r, err := outbox.NewRelay(lossy, faulty, outbox.Config{
			Owner:          owner,
			BatchSize:      20,
			Lease:          500 * time.Millisecond,
			PublishTimeout: 200 * time.Millisecond,
			PollInterval:   50 * time.Millisecond,
			Backoff:        outbox.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
			Middleware:     mws,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		relays = append(relays, r)
	}
	waitDrained(ctx, t, store)
	for _, r := range relays {
		if err := r.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}

	lost := lossy.lostCount()
	if lost == 0 {
		t.Fatal("no ack was lost: the test proved nothing")
	}
	count := map[string]int{}
	for _, m := range broker.Received() {
		count[m.ID]++
	}
	if len(count) != n {
		t.Fatalf("broker received %d distinct messages, want %d", len(count), n)
	}
	duplicates := broker.Len() - n
	want := 0
	if !withDedup {
		want = lost
	}
	if duplicates != want {
		t.Errorf("%d duplicates with %d acks lost, want %d", duplicates, lost, want)
	}
	t.Logf("%d acks lost, %d transport calls, %d duplicates", lost, faulty.Calls(), duplicates)
}
