package dedup_test

import (
	"context"
	"testing"
	"time"

	"github.com/txoutbox/outbox/core"
	"github.com/txoutbox/outbox/middleware/dedup"
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
			relayMiddleware := func() []core.Middleware {
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
				return []core.Middleware{mw}
			}

			store := outboxtest.NewMemoryStore()
			broker := memory.New()
			if err := store.Add(ctx, outboxtest.NewMessages(1, "ORDER_PLACED", "order-1")...); err != nil {
				t.Fatal(err)
			}
			cfg := core.Config{
				Lease:          600 * time.Millisecond,
				PublishTimeout: 200 * time.Millisecond,
				PollInterval:   50 * time.Millisecond,
				Concurrency:    1,
			}

			ackless := outboxtest.NewFaultyStore(store, 1)
			ackless.SetFailRates(0, 1, 0) // every ack of relay A fails
			cfgA := cfg
			cfgA.Owner, cfgA.Middleware = "relay-a", relayMiddleware()
			a, err := core.NewRelay(ackless, broker, cfgA)
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
			b, err := core.NewRelay(store, broker, cfgB)
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
func waitDrained(ctx context.Context, t *testing.T, store core.Inspector) {
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
