package main

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

// TestOrderedRelayStalledKey: with the default ordered mode and a FIFO queue, a dead message holds back the
// later messages of its key only; `outbox status` names the key; `outbox dead requeue --key`
// releases it, and the key's messages then arrive in write order, the requeued one first.
func TestOrderedRelayStalledKey(t *testing.T) {
	h := newHarness(t, true)
	writeKey := func(key string, n int) []string {
		var ids []string
		for i := range n {
			id, err := h.write(i, key)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		return ids
	}
	stalled := writeKey("order-1", 1)
	kill(t, h.store, []*outbox.Message{{ID: stalled[0]}}, "sqs: throttled 25 times")
	held := writeKey("order-1", 5)
	flowing := writeKey("order-2", 5)

	in := receive(h.ctx, h.client, h.queue)
	defer in.close()
	relay := startRelay(t, h.bin, h.environ)

	if !in.waitFor(30*time.Second, func() bool { return in.count() >= len(flowing) }) {
		t.Fatalf("%d of the other key's events arrived:\n%s", in.count(), relay.logs.String())
	}
	time.Sleep(500 * time.Millisecond) // room for a held message to slip through, were it not held
	for _, id := range append(stalled, held...) {
		if in.has(id) {
			t.Fatalf("message %s of the stalled key was published before its dead head was requeued", id)
		}
	}
	r := h.status()
	if r.Dead != 1 || r.Pending != int64(len(held)) || len(r.StalledKeys) != 1 || r.StalledKeys[0].Key != "order-1" ||
		r.StalledKeys[0].HeadID != stalled[0] || r.StalledKeys[0].LastError != "sqs: throttled 25 times" {
		t.Fatalf("status with a stalled key: %+v", r)
	}

	if code, out := outboxCmd(t, h.bin, h.environ, "dead", "requeue", "--key", "order-1"); code != 0 {
		t.Fatalf("dead requeue --key: exit %d: %s", code, out)
	}
	want := append(slices.Clone(stalled), held...)
	if !in.waitFor(30*time.Second, func() bool { return in.count() == len(flowing)+len(want) }) {
		t.Fatalf("%d events arrived after the requeue, want %d:\n%s", in.count(), len(flowing)+len(want), relay.logs.String())
	}
	in.mu.Lock()
	var got []string
	for _, id := range in.order {
		if slices.Contains(want, id) {
			got = append(got, id)
		}
	}
	in.mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("order-1 arrived as %v, want %v (requeued head first, then write order)", got, want)
	}
	if code := relay.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("relay exit %d after SIGTERM:\n%s", code, relay.logs.String())
	}
}
