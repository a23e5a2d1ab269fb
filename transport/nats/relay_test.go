package nats_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// runRelay starts a relay from store to tr, stopped when the test ends.
func runRelay(t *testing.T, store outbox.Store, tr outbox.Transport, cfg outbox.Config) *outbox.Relay {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.Backoff == (outbox.Backoff{}) {
		cfg.Backoff = outbox.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	}
	relay, err := outbox.NewRelay(store, tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(context.Background()); err != nil {
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

// waitCounts polls the store's counts until cond holds, for at most timeout.
func waitCounts(t *testing.T, store outbox.Inspector, timeout time.Duration, cond func(outbox.Counts) bool) outbox.Counts {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := store.Counts(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if cond(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v; counts %+v", timeout, c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkStream reads the stream back and checks that it holds each of want exactly once
// (duplicates counted, allowed up to maxDup), and, when ordered, every key's messages in the
// order of want. It returns the number of duplicates.
func checkStream(t *testing.T, st *stream, want []*outbox.Message, ordered bool, maxDup int) int {
	t.Helper()
	got := st.readAll(t, false)
	index := make(map[string]int, len(want))
	for i, m := range want {
		index[m.ID] = i
	}
	seen := map[string]bool{}
	last := map[string]int{} // key -> index in want of its last message read
	dups := 0
	for _, r := range got {
		i, ok := index[r.Msg.ID]
		switch {
		case !ok:
			t.Fatalf("the stream holds %s, which was never written", r.Msg.ID)
		case seen[r.Msg.ID]:
			dups++
			continue
		}
		seen[r.Msg.ID] = true
		if k := want[i].Key; ordered && k != "" {
			if prev, ok := last[k]; ok && prev > i {
				t.Fatalf("key %s: message %d read after message %d", k, i, prev)
			}
			last[k] = i
		}
	}
	if lost := len(want) - len(seen); lost != 0 {
		t.Fatalf("%d of %d messages are not in the stream", lost, len(want))
	}
	if dups > maxDup {
		t.Fatalf("%d duplicates in the stream, want at most %d", dups, maxDup)
	}
	return dups
}

// The relay drains a backlog through the transport; a consumer reads every message back once.
func TestRelayDrains(t *testing.T) {
	s := needServer(t)
	cases := []struct {
		name    string
		ordered bool
		keys    int
	}{
		{"unordered", false, 0},
		{"ordered, 20 keys", true, 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := s.createStream(t, nil)
			tr := newTransport(t, outboxnats.Config{Subject: st.subject(), KeepKeyOrder: c.ordered})
			store := memstore.New()
			var msgs []*outbox.Message
			for i := range 2000 {
				key := ""
				if c.keys > 0 {
					key = fmt.Sprintf("k%d", i%c.keys)
				}
				msgs = append(msgs, messages(1, "T", key)...)
			}
			if err := store.Add(testCtx(t), msgs...); err != nil {
				t.Fatal(err)
			}
			relay := runRelay(t, store, tr, outbox.Config{Unordered: !c.ordered})
			waitCounts(t, store, 30*time.Second, func(c outbox.Counts) bool { return c.Pending == 0 })
			if st := relay.Stats(); st.Published != int64(len(msgs)) || st.Dead != 0 || st.Failed != 0 {
				t.Fatalf("relay stats %+v, want %d published and nothing failed", st, len(msgs))
			}
			checkStream(t, st, msgs, c.ordered, 0)
			if got := tr.Stats(); got.Published != int64(len(msgs)) || got.Duplicates != 0 {
				t.Errorf("transport stats %+v, want %d published, no duplicate", got, len(msgs))
			}
		})
	}
}

// Ordered mode with KeepKeyOrder and a message the stream refuses: it is dead-lettered at once
// with the reason and blocks only its own key, whose later messages wait (promise 4) while the
// other keys flow; once the dead letter is purged, the key goes on, in order.
func TestRelayOrderedPoisonMessage(t *testing.T) {
	s := needServer(t)
	st := s.createStream(t, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 1024 })
	tr := newTransport(t, outboxnats.Config{Subject: st.subject(), KeepKeyOrder: true})
	var msgs []*outbox.Message
	for i := range 300 {
		msgs = append(msgs, messages(1, "T", fmt.Sprintf("k%d", i%3))...)
	}
	poison := msgs[30] // the 11th message of key k0
	poison.Payload = json.RawMessage(`"` + strings.Repeat("x", 2048) + `"`)
	store := memstore.New()
	if err := store.Add(testCtx(t), msgs...); err != nil {
		t.Fatal(err)
	}
	relay := runRelay(t, store, tr, outbox.Config{BatchSize: 50})

	// k1 and k2 drain; k0 stops behind its dead message: 89 wait.
	waitCounts(t, store, 30*time.Second, func(c outbox.Counts) bool { return c.Dead == 1 && c.Pending == 89 })
	waitFor(t, 30*time.Second, "the other keys to be published", func() bool { return relay.Stats().Published == 210 })
	dead, err := store.ListDead(testCtx(t), outbox.DeadFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != poison.ID || dead[0].Attempts != 1 || !strings.Contains(dead[0].LastError, "max_msg_size") {
		t.Fatalf("dead letters %+v, want the poison message after one attempt, with the reason", dead)
	}
	if n := st.count(t); n != 210 {
		t.Fatalf("the stream holds %d messages, want 210: k0's 10 before the poison, all of k1 and k2", n)
	}

	if _, err := store.Purge(testCtx(t), outbox.DeadFilter{}); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, store, 30*time.Second, func(c outbox.Counts) bool { return c.Pending == 0 && c.Dead == 0 })
	var rest []*outbox.Message
	for _, m := range msgs {
		if m != poison {
			rest = append(rest, m)
		}
	}
	checkStream(t, st, rest, true, 0)
}

// waitFor polls cond until it holds, for at most timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
