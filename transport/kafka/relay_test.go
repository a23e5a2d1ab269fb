package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/kafka"
)

// runRelay starts a relay from store to tr, stopped when the test ends.
func runRelay(t *testing.T, store outbox.Store, tr outbox.Transport, cfg outbox.Config) *outbox.Relay {
	t.Helper()
	cfg.PollInterval = 50 * time.Millisecond
	cfg.Backoff = outbox.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
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

func waitDrained(t *testing.T, store outbox.Inspector) outbox.Counts {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := store.Counts(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if c.Pending == 0 {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out; counts %+v", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A relay drains a backlog through the transport, unordered and ordered; a consumer reads back
// every message exactly once, and in ordered mode each key in its order.
func TestRelayDrains(t *testing.T) {
	c := needCluster(t)
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%t", ordered), func(t *testing.T) {
			topic := c.createTopic(t, 4, nil)
			store := memstore.New()
			var in []*outbox.Message
			for i := range 400 {
				in = append(in, messages(1, "T", fmt.Sprintf("key-%d", i%10))...)
			}
			in = append(in, messages(100, "T", "")...)
			if err := store.Add(testCtx(t), in...); err != nil {
				t.Fatal(err)
			}
			relay := runRelay(t, store, c.newTransport(t, kafka.Config{Topic: topic}), outbox.Config{Unordered: !ordered, BatchSize: 50, Concurrency: 3})
			if counts := waitDrained(t, store); counts.Dead != 0 {
				t.Fatalf("counts %+v: nothing should die", counts)
			}
			if st := relay.Stats(); st.Failed != 0 || st.Published != int64(len(in)) {
				t.Errorf("stats %+v, want %d published and no failure", st, len(in))
			}
			got := c.consumeExactly(t, len(in), false, topic)
			if ordered {
				checkKeyOrder(t, in, got)
			} else {
				checkOnce(t, in, got)
			}
		})
	}
}

// Ordered relay through produce failures: batches refused with a server error (retryable,
// charged as attempts) and an outage (too few in-sync replicas, which pauses the relay). Every
// message is delivered exactly once (a refused batch is not written), in its key's order, and
// none dies.
func TestRelayThroughFaults(t *testing.T) {
	c := needFake(t, faults)
	topic := c.createTopic(t, 3, nil)
	store := memstore.New()
	var in []*outbox.Message
	for i := range 300 {
		in = append(in, messages(1, "T", fmt.Sprintf("key-%d", i%6))...)
	}
	if err := store.Add(testCtx(t), in...); err != nil {
		t.Fatal(err)
	}
	refused := c.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.UnknownServerError, Count: 3, When: c.nthProduceTo(topic, 2)})
	defer refused.Remove()
	outage := c.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.NotEnoughReplicas, Count: 4, When: c.nthProduceTo(topic, 6)})
	defer outage.Remove()

	tr := c.newTransport(t, kafka.Config{Topic: topic, DeliveryTimeout: time.Second})
	relay := runRelay(t, store, tr, outbox.Config{BatchSize: 40, Concurrency: 2})
	if counts := waitDrained(t, store); counts.Dead != 0 {
		t.Fatalf("counts %+v: nothing should die", counts)
	}
	if refused.Hits() == 0 || outage.Hits() == 0 {
		t.Fatalf("faults answered %d and %d requests; the test injected nothing", refused.Hits(), outage.Hits())
	}
	if st := relay.Stats(); st.Failed == 0 {
		t.Errorf("stats %+v: the refused batches should count as failures", st)
	}
	checkKeyOrder(t, in, c.consumeExactly(t, len(in), false, topic))
}
