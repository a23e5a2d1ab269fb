package sqs_test

import (
	"context"
	"encoding/json"
	memstore "github.com/txoutbox/outbox/store/memory"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/sqs"
)

// runRelay starts a relay from store to tr, stopped when the test ends.
func runRelay(t *testing.T, store outbox.Store, tr outbox.Transport) *outbox.Relay {
	t.Helper()
	relay, err := outbox.NewRelay(store, tr, outbox.Config{
		PollInterval: 50 * time.Millisecond,
		Backoff:      outbox.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
	})
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

func waitCounts(t *testing.T, store outbox.Inspector, cond func(outbox.Counts) bool) outbox.Counts {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := store.Counts(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if cond(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out; counts %+v", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With the relay: messages SQS can never take are dead-lettered at once, with the reason,
// while every other message is delivered.
func TestRelayDeadLettersWhatSQSCannotTake(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, false)
	store := memstore.New()
	store.MaxPayloadBytes = 1 << 20 // the store takes what the queue will not
	good := messages(50, "T", "")
	big := &outbox.Message{Type: "T", Payload: json.RawMessage(`"` + strings.Repeat("x", 300<<10) + `"`)}
	if err := store.Add(testCtx(t), append(good, big)...); err != nil {
		t.Fatal(err)
	}
	runRelay(t, store, newTransport(t, sqs.Config{QueueURL: url}))

	waitCounts(t, store, func(c outbox.Counts) bool { return c.Pending == 0 && c.Dead == 1 })
	dead, err := store.ListDead(testCtx(t), outbox.DeadFilter{})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, d := range dead {
		reasons[d.ID] = d.LastError
		if d.Attempts > 1 {
			t.Errorf("%s died after %d attempts, want 1: the error is permanent", d.ID, d.Attempts)
		}
	}
	if !strings.Contains(reasons[big.ID], "MaxMessageBytes") {
		t.Errorf("dead-letter reasons %v", reasons)
	}
	if _, err := s.receive(testCtx(t), url, len(good), false); err != nil {
		t.Fatal(err)
	}
}

// With the relay: throttling is an outage of the destination: the relay pauses and probes until
// SQS takes the messages, charges no attempt, and dead-letters nothing.
func TestRelayRetriesThrottling(t *testing.T) {
	f := newFaultServer(t)
	var throttles atomic.Int64
	throttles.Store(3)
	throttled := awsError(400, "com.amazonaws.sqs#RequestThrottled", "RequestThrottled;Sender", "Rate exceeded")
	f.answer = func(w http.ResponseWriter, ids []string) {
		if throttles.Add(-1) >= 0 {
			throttled(w, ids)
			return
		}
		succeed(w, ids)
	}
	store := memstore.New()
	if err := store.Add(testCtx(t), messages(30, "T", "")...); err != nil {
		t.Fatal(err)
	}
	relay := runRelay(t, store, f.transport(t, sqs.Config{}))
	waitCounts(t, store, func(c outbox.Counts) bool { return c.Pending == 0 })
	if st := relay.Stats(); st.Dead != 0 || st.Published != 30 || st.Failed != 0 || st.Released == 0 {
		t.Errorf("stats %+v: want 30 published after some released batches, nothing failed or dead", st)
	}
}

// Ordered mode on a FIFO queue: the transport keeps key order within a Publish, so the relay
// sends a key's run in one call (up to ten messages per SendMessageBatch), and one hot key
// arrives in order.
func TestOrderedRelayOnFIFOQueue(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, true)
	store := memstore.New()
	written := messages(120, "T", "hot-key")
	if err := store.Add(testCtx(t), written...); err != nil {
		t.Fatal(err)
	}
	tr := newTransport(t, sqs.Config{QueueURL: url})
	if !tr.KeepsKeyOrder() {
		t.Fatal("a FIFO queue transport does not keep key order")
	}
	relay, err := outbox.NewRelay(store, tr, outbox.Config{BatchSize: 50, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := relay.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	got, err := s.receive(testCtx(t), url, len(written), false)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		if r.Msg.ID != written[i].ID {
			t.Fatalf("message %d arrived as %s, want %s: the key's order broke", i, r.Msg.ID, written[i].ID)
		}
	}
	if st := relay.Stats(); st.Batches > 6 {
		t.Errorf("%d batches for 120 messages of one key with BatchSize 50: runs were not claimed", st.Batches)
	}
}
