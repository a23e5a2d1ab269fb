package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

// hangingTransport publishes through tr, except that a publish holding the message hanging
// never completes: it blocks until its ctx ends. With perMessage it reports per-message results
// instead: the rest of the batch is published, and only the hanging message fails, with ctx's
// error, in a BatchError.
func hangingTransport(tr *memory.Transport, hanging string, perMessage bool, tries *atomic.Int64) outbox.Transport {
	return outbox.TransportFunc(func(ctx context.Context, msgs []*outbox.Message) error {
		i := slices.IndexFunc(msgs, func(m *outbox.Message) bool { return m.ID == hanging })
		if i < 0 {
			return tr.Publish(ctx, msgs)
		}
		tries.Add(1)
		if perMessage {
			if rest := slices.Delete(slices.Clone(msgs), i, i+1); len(rest) > 0 {
				if err := tr.Publish(ctx, rest); err != nil {
					return err
				}
			}
		}
		<-ctx.Done()
		if perMessage {
			return &outbox.BatchError{Failed: map[string]error{hanging: ctx.Err()}}
		}
		return ctx.Err()
	})
}

// Promises 5 and 7: one message whose publish never completes is not an outage. The probes
// leave it out, so the relay finds that the transport works without it; its later timeouts
// concern it and are charged, so it goes dead after MaxAttempts, and the rest flows meanwhile.
func TestPromiseHangingMessageGoesDead(t *testing.T) {
	for _, perMessage := range []bool{false, true} {
		t.Run(fmt.Sprint("PerMessageResults=", perMessage), func(t *testing.T) {
			st := memstore.New()
			tr := memory.New()
			hanging := write(t, st, 1, noKey)[0]
			others := write(t, st, 50, noKey)
			var tries atomic.Int64
			r := startRelay(t, st, hangingTransport(tr, hanging.ID, perMessage, &tries),
				outbox.Config{MaxAttempts: 3, PublishTimeout: 100 * time.Millisecond})

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := tr.WaitFor(ctx, len(others)); err != nil {
				s := r.Stats()
				t.Fatalf("within a second: batches with the hanging message tried %d times; other messages published %d of %d; Dead %d; TransportDownSince set %v",
					tries.Load(), tr.Len(), len(others), s.Dead, !s.TransportDownSince.IsZero())
			}
			checkHungDead(t, st, r, hanging, 3)
			for _, m := range tr.Received() {
				if m.ID == hanging.ID {
					t.Fatal("the hanging message was recorded as published")
				}
			}
		})
	}
}

// In ordered mode the hanging message blocks its own key until it is dead (then its key waits
// behind a dead head, as behind any dead message); the other keys flow meanwhile.
func TestPromiseOrderedHangingMessageBlocksOnlyItsKey(t *testing.T) {
	st := memstore.New()
	tr := memory.New()
	run := write(t, st, 3, func(int) string { return "hung" })
	others := write(t, st, 50, func(i int) string { return fmt.Sprint("k", i%10) })
	var tries atomic.Int64
	r := startRelay(t, st, hangingTransport(tr, run[0].ID, false, &tries),
		outbox.Config{MaxAttempts: 3, PublishTimeout: 100 * time.Millisecond})

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := tr.WaitFor(ctx, len(others)); err != nil {
		s := r.Stats()
		t.Fatalf("within a second: batches with the hanging message tried %d times; other keys' messages published %d of %d; Dead %d; TransportDownSince set %v",
			tries.Load(), tr.Len(), len(others), s.Dead, !s.TransportDownSince.IsZero())
	}
	checkHungDead(t, st, r, run[0], 3)
	for _, m := range tr.Received() {
		if m.Key == "hung" {
			t.Fatalf("%s of the hanging message's key was published", m.ID)
		}
	}
}

// checkHungDead waits for the hanging message to be dead after attempts publishes that timed
// out, with a last error that says so, and for the relay to be out of any outage.
func checkHungDead(t *testing.T, st *memstore.Store, r *outbox.Relay, hanging *outbox.Message, attempts int) {
	t.Helper()
	eventually(t, "the hanging message to be dead", func() bool {
		c, _ := st.Counts(context.Background())
		return c.Dead == 1
	})
	dead, err := st.ListDead(context.Background(), outbox.DeadFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != hanging.ID || dead[0].Attempts != attempts || !strings.Contains(dead[0].LastError, "timed out") {
		t.Fatalf("dead letters %+v, want %s with %d attempts and a timeout as its last error", dead, hanging.ID, attempts)
	}
	if s := r.Stats(); s.Dead != 1 || !s.TransportDownSince.IsZero() {
		t.Fatalf("stats %+v: want one dead and no outage", s)
	}
}
