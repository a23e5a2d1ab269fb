package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

// In ordered mode a batch that returned anything is followed by another claim at once: acking a
// run may have made the next messages of its keys due. With polling an hour away, a backlog of
// few keys drains only if the relay does not wait between batches.
func TestOrderedDrainsFewKeysWithoutWaitingForPoll(t *testing.T) {
	for _, keepsOrder := range []bool{true, false} {
		t.Run(fmt.Sprint("KeepsKeyOrder=", keepsOrder), func(t *testing.T) {
			st := memstore.New()
			tr := memory.New()
			var transport outbox.Transport = tr
			if !keepsOrder {
				transport = outbox.TransportFunc(tr.Publish) // hides KeyOrderer
			}
			written := write(t, st, 2_000, func(i int) string { return fmt.Sprint("k", i%5) })
			startRelay(t, st, transport, outbox.Config{PollInterval: time.Hour, BatchSize: 50})
			waitDelivered(t, tr, len(written), 20*time.Second)
			r := outboxtest.CheckDelivery(t, written, tr.Received(), outboxtest.DeliveryCheck{Ordered: true})
			if r.OrderViolations != 0 || r.Duplicates != 0 {
				t.Fatalf("report %+v", r)
			}
		})
	}
}

// A transport that keeps key order gets a key's run in one call; any other gets one message per
// key per call, in order.
func TestOrderedRunsPerCall(t *testing.T) {
	for _, keepsOrder := range []bool{true, false} {
		t.Run(fmt.Sprint("KeepsKeyOrder=", keepsOrder), func(t *testing.T) {
			st := memstore.New()
			tr := memory.New()
			var maxPerKey atomic.Int64
			counting := outbox.TransportFunc(func(ctx context.Context, msgs []*outbox.Message) error {
				perKey := map[string]int64{}
				for _, m := range msgs {
					perKey[m.Key]++
					if perKey[m.Key] > maxPerKey.Load() {
						maxPerKey.Store(perKey[m.Key])
					}
				}
				return tr.Publish(ctx, msgs)
			})
			var transport outbox.Transport = counting
			if keepsOrder {
				transport = keyOrderedTransport{counting}
			}
			write(t, st, 30, func(int) string { return "one-key" })
			startRelay(t, st, transport, outbox.Config{BatchSize: 10})
			waitDelivered(t, tr, 30, 10*time.Second)
			want := int64(1)
			if keepsOrder {
				want = 10
			}
			if got := maxPerKey.Load(); got != want {
				t.Fatalf("at most %d messages of the key per call, want %d", got, want)
			}
		})
	}
}

type keyOrderedTransport struct{ outbox.Transport }

func (keyOrderedTransport) KeepsKeyOrder() bool { return true }

// A dead message in the middle of a run: the prefix is published, the dead one blocks its key,
// and the rest of the key is never published; other keys flow.
func TestOrderedDeadInTheMiddleOfARun(t *testing.T) {
	st := memstore.New()
	tr := memory.New()
	run := write(t, st, 5, func(int) string { return "run" })
	others := write(t, st, 20, func(i int) string { return fmt.Sprint("other", i%4) })
	tr.FailIDs(outbox.Permanent(errors.New("rejected")), run[2].ID)
	startRelay(t, st, tr, outbox.Config{})
	waitDelivered(t, tr, 2+len(others), 10*time.Second)
	eventually(t, "the poison message to die", func() bool {
		c, _ := st.Counts(context.Background())
		return c.Dead == 1
	})
	for _, m := range tr.Received() {
		if m.ID == run[3].ID || m.ID == run[4].ID {
			t.Fatalf("message %s behind a dead one of its key was published", m.ID)
		}
	}
}
