package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/memory"
)

// Four relays, each with its own Store (as four processes would have), drain one table: every
// message is published exactly once (nothing crashes, so nothing is published twice), and in
// ordered mode every key's messages arrive in the order they were written.
func TestFourRelays(t *testing.T) {
	total := 20000
	if testing.Short() {
		total = 4000
	}
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("Ordered=%t", ordered), func(t *testing.T) {
			first, cfg := newStore(t, nil)
			keys := make([]string, 50)
			for i := range keys {
				keys[i] = fmt.Sprintf("key-%d", i)
			}
			written := make([]*outbox.Message, 0, total)
			for len(written) < total {
				batch := make([]*outbox.Message, 0, 500)
				for range 500 {
					key := keys[rand.IntN(len(keys))]
					if rand.IntN(10) == 0 {
						key = "" // unordered messages mixed in
					}
					batch = append(batch, msg(t, "T", key, len(written)+len(batch)))
				}
				add(t, first, batch...)
				written = append(written, batch...)
			}

			transport := memory.New()
			var mu sync.Mutex
			seen := map[string]int{}
			unsubscribe := transport.Subscribe(func(_ context.Context, m *outbox.Message) error {
				mu.Lock()
				seen[m.ID]++
				mu.Unlock()
				return nil
			})
			defer unsubscribe()
			relays := make([]*outbox.Relay, 4)
			for i := range relays {
				store := first
				if i > 0 {
					store = openStore(t, cfg)
				}
				r, err := outbox.NewRelay(store, transport, outbox.Config{
					BatchSize: 100, Concurrency: 2, PollInterval: 50 * time.Millisecond, Unordered: !ordered,
					Owner: fmt.Sprintf("relay-%d", i),
				})
				if err != nil {
					t.Fatal(err)
				}
				relays[i] = r
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			for _, r := range relays {
				if err := r.Start(ctx); err != nil {
					t.Fatal(err)
				}
			}
			waitErr := transport.WaitFor(ctx, total)
			for _, r := range relays {
				if err := r.Stop(context.Background()); err != nil {
					t.Error(err)
				}
			}
			if waitErr != nil {
				t.Fatalf("published %d of %d: %v", transport.Len(), total, waitErr)
			}

			mu.Lock()
			defer mu.Unlock()
			for _, m := range written {
				if seen[m.ID] != 1 {
					t.Fatalf("message %s published %d times, want exactly once", m.ID, seen[m.ID])
				}
			}
			if len(seen) != total {
				t.Fatalf("%d distinct messages published, want %d", len(seen), total)
			}
			shared := 0
			for i, r := range relays {
				if r.Stats().Published > 0 {
					shared++
				}
				t.Logf("relay %d published %d", i, r.Stats().Published)
			}
			if shared < 2 {
				t.Fatalf("only %d relay(s) did any work", shared)
			}
			if ordered {
				position := map[string]int{}
				for i, m := range written {
					position[m.ID] = i
				}
				last := map[string]int{}
				for _, m := range transport.Received() {
					if m.Key == "" {
						continue
					}
					if p, ok := last[m.Key]; ok && position[m.ID] < p {
						t.Fatalf("key %s: message written at %d published after the one written at %d", m.Key, position[m.ID], p)
					}
					last[m.Key] = position[m.ID]
				}
			}
			if c, err := first.Counts(context.Background()); err != nil || c.Pending != 0 {
				t.Fatalf("after draining: %+v, %v", c, err)
			}
		})
	}
}

// noAck is a relay's store that publishes but never acknowledges: a relay stuck after publish.
type noAck struct{ outbox.Store }

func (noAck) Ack(_ context.Context, _ string, ids []string) (int, error) { return len(ids), nil }

// A relay that stops acknowledging loses its leases when they expire, and another relay
// publishes the messages (a duplicate, never a loss).
func TestStuckRelayLosesLeases(t *testing.T) {
	s, cfg := newStore(t, nil)
	const n = 50
	batch := make([]*outbox.Message, n)
	for i := range batch {
		batch[i] = msg(t, "T", "", i)
	}
	add(t, s, batch...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	lease := time.Second
	stuckTransport := memory.New()
	stuck, err := outbox.NewRelay(noAck{s}, stuckTransport, outbox.Config{Lease: lease, PollInterval: 50 * time.Millisecond, Owner: "stuck"})
	if err != nil {
		t.Fatal(err)
	}
	stuckStart := time.Now() // every lease it takes expires after stuckStart+lease
	if err := stuck.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stuckTransport.WaitFor(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := stuck.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	healthyTransport := memory.New()
	var firstAt time.Time
	var once sync.Once
	healthyTransport.Subscribe(func(context.Context, *outbox.Message) error {
		once.Do(func() { firstAt = time.Now() })
		return nil
	})
	healthy, err := outbox.NewRelay(openStore(t, cfg), healthyTransport, outbox.Config{Lease: lease, PollInterval: 50 * time.Millisecond, Owner: "healthy"})
	if err != nil {
		t.Fatal(err)
	}
	if err := healthy.Start(ctx); err != nil {
		t.Fatal(err)
	}
	err = healthyTransport.WaitFor(ctx, n)
	if stopErr := healthy.Stop(context.Background()); stopErr != nil {
		t.Error(stopErr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if expiry := stuckStart.Add(lease); firstAt.Before(expiry) {
		t.Fatalf("healthy relay published at %v, before the stuck relay's leases could expire (%v)", firstAt, expiry)
	}
	if c, err := s.Counts(ctx); err != nil || c.Pending != 0 {
		t.Fatalf("after takeover: %+v, %v", c, err)
	}
}
