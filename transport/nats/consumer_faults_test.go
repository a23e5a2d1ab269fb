package nats_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// The server is killed (SIGKILL) and restarted while a consumer runs, with a handler in flight
// whose ack therefore cannot be confirmed: the consumer reconnects on its own, the messages
// published after the restart are handled, and the one in flight is delivered again. (The
// server may deliver others again too: a killed server can lose acks it had not yet written.)
func TestConsumerServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: restarts a private nats-server (skipped with -short)")
	}
	p := startPrivate(t)
	admin := dialServer(t, p.url, "private nats-server at "+p.url)
	st := admin.createStream(t, func(c *jetstream.StreamConfig) { c.Storage = jetstream.FileStorage })
	durable := st.durable(t, func(c *jetstream.ConsumerConfig) { c.AckWait = 2 * time.Second })
	tr := newTransport(t, outboxnats.Config{Connection: outboxnats.Connection{URL: outboxnats.URL(p.url), ReconnectWait: 20 * time.Millisecond}, Subject: st.subject(), AckTimeout: time.Second})

	first := prepared(t, messages(10, "BEFORE", "")...)
	if err := tr.Publish(testCtx(t), first); err != nil {
		t.Fatal(err)
	}
	held := first[0].ID
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	col := newCollector()
	c := newConsumer(t, outboxnats.ConsumerConfig{
		Connection: outboxnats.Connection{URL: outboxnats.URL(p.url), ReconnectWait: 20 * time.Millisecond},
		Stream:     st.name,
		Durable:    durable,
		FetchWait:  500 * time.Millisecond,
		AckTimeout: time.Second,
	}, func(ctx context.Context, m *outbox.Message) error {
		if m.ID == held {
			first := false
			once.Do(func() { first = true })
			if first {
				close(entered)
				<-release // its ack goes out while the server is down
			}
		}
		return col.handle(ctx, m)
	})
	<-entered
	waitFor(t, 10*time.Second, "the other messages handled and acked", func() bool { return c.Stats().Acked == int64(len(first)-1) })

	p.kill()
	close(release)
	waitFor(t, 10*time.Second, "the held message's ack to fail", func() bool { return c.Stats().AckErrors >= 1 })
	p.start()

	second := prepared(t, messages(10, "AFTER", "")...)
	deadline := time.Now().Add(15 * time.Second)
	for err := tr.Publish(testCtx(t), second); err != nil; err = tr.Publish(testCtx(t), second) {
		if !outbox.IsUnavailable(err) && !errors.As(err, new(*outbox.BatchError)) || time.Now().After(deadline) {
			t.Fatalf("publish after the restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the transport is reconnecting
	}
	waitFor(t, 20*time.Second, "every message handled, the held one again", func() bool {
		col.mu.Lock()
		defer col.mu.Unlock()
		return len(col.msgs) == len(first)+len(second) && col.count[held] >= 2
	})
	calls := func() int64 {
		col.mu.Lock()
		defer col.mu.Unlock()
		n := 0
		for _, k := range col.count {
			n += k
		}
		return int64(n)
	}
	waitFor(t, 10*time.Second, "every handler call counted as handled", func() bool {
		s := c.Stats()
		return s.InFlight == 0 && s.Handled == calls()
	})
	if s := c.Stats(); s.AckErrors < 1 || s.Failed != 0 {
		t.Errorf("stats %+v: want the held message's ack failed, no handler failure", s)
	}
}
