package rabbitmq_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// runRelay starts a relay from store to tr, stopped when the test ends.
func runRelay(t *testing.T, store outbox.Store, tr outbox.Transport, cfg outbox.Config) *outbox.Relay {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	if cfg.Backoff == (outbox.Backoff{}) {
		cfg.Backoff = outbox.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	}
	relay, err := outbox.NewRelay(store, tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := relay.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return relay
}

// keyed returns n messages spread over keys keys, in write order.
func keyed(n, keys int) []*outbox.Message {
	msgs := make([]*outbox.Message, n)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: "T", Key: fmt.Sprintf("k%d", i%keys), Payload: []byte(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return msgs
}

// A relay drains a backlog through the transport; a consumer reads every message back, once,
// and in ordered mode in per-key order.
func TestRelayDrains(t *testing.T) {
	b := needBroker(t)
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%t", ordered), func(t *testing.T) {
			q := b.queue(t, nil)
			store := memstore.New()
			msgs := keyed(2000, 20)
			if err := store.Add(testCtx(t), msgs...); err != nil {
				t.Fatal(err)
			}
			tr := newTransport(t, rabbitmq.Config{RoutingKey: q, KeepKeyOrder: ordered})
			relay := runRelay(t, store, tr, outbox.Config{Unordered: !ordered, Concurrency: 4})
			got, err := b.receive(testCtx(t), q, len(msgs), false)
			if err != nil {
				t.Fatal(err)
			}
			delivered := make([]*outbox.Message, len(got))
			for i, r := range got {
				delivered[i] = r.Msg
			}
			outboxtest.CheckDelivery(t, msgs, delivered, outboxtest.DeliveryCheck{Ordered: ordered})
			if st := relay.Stats(); st.Dead != 0 || st.Failed != 0 {
				t.Fatalf("stats %+v: want nothing failed or dead", st)
			}
		})
	}
}

// With the relay, a message too large for the transport is dead-lettered at once with its
// reason while the others are delivered.
func TestRelayDeadLettersOversized(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	store := memstore.New()
	good := messages(20, "T", "")
	big := &outbox.Message{Type: "T", Payload: []byte(`"` + strings.Repeat("x", 70<<10) + `"`)}
	if err := store.Add(testCtx(t), append(good, big)...); err != nil {
		t.Fatal(err)
	}
	runRelay(t, store, newTransport(t, rabbitmq.Config{RoutingKey: q, MaxMessageBytes: 64 << 10}), outbox.Config{})
	if _, err := b.receive(testCtx(t), q, len(good), false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		dead, err := store.ListDead(testCtx(t), outbox.DeadFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) == 1 {
			if dead[0].ID != big.ID || dead[0].Attempts > 1 {
				t.Fatalf("dead %+v: want the oversized message after one attempt", dead[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d dead messages, want 1", len(dead))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
