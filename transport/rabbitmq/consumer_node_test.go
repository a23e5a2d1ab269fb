package rabbitmq_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// The broker restarts (stop_app, start_app on a private node) while a handler runs: its ack
// cannot reach the broker, the consumer redials with backoff until the broker is back, the
// message comes again, and what is published after the restart is consumed too.
func TestConsumerBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private RabbitMQ node")
	}
	n := startNode(t)
	b := n.broker(t)
	q := b.queue(t, nil)
	tr := newTransport(t, rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(n.url), ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond}, RoutingKey: q})

	entered, release := make(chan struct{}), make(chan struct{})
	var holdCalls atomic.Int64
	var mu sync.Mutex
	handled := map[string]int{}
	c := newConsumer(t, rabbitmq.ConsumerConfig{Connection: rabbitmq.Connection{URL: rabbitmq.URL(n.url), ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond}, Queue: q},
		func(ctx context.Context, m *outbox.Message) error {
			if m.Type == "HOLD" && holdCalls.Add(1) == 1 {
				close(entered)
				<-release
			}
			mu.Lock()
			handled[m.ID]++
			mu.Unlock()
			return nil
		})
	startConsumer(t, c)
	before := prepared(t, messages(10, "T", "")...)
	hold := prepared(t, messages(1, "HOLD", "")...)
	if err := tr.Publish(testCtx(t), append(before, hold...)); err != nil {
		t.Fatal(err)
	}
	<-entered
	waitFor(t, 15*time.Second, "the first 10 acknowledged", func() bool { return c.Stats().Acked == 10 })

	n.ctlOrFail(t, "stop_app")
	waitFor(t, 15*time.Second, "the connection lost", func() bool { return c.Stats().ReceiveErrors >= 1 })
	close(release) // the handler finishes while the broker is down: its ack has no channel
	waitFor(t, 15*time.Second, "the ack to fail", func() bool { return c.Stats().AckErrors == 1 })
	n.ctlOrFail(t, "start_app")

	after := prepared(t, messages(10, "T", "")...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		err := tr.Publish(ctx, after) // the transport may still wait out its own backoff
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("publish after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, 15*time.Second, "every message handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 21 && handled[hold[0].ID] == 2
	})
	if calls := holdCalls.Load(); calls != 2 {
		t.Fatalf("the message in flight during the restart was handled %d times, want 2 (its ack was lost)", calls)
	}
	if err := c.Stop(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if left := n.broker(t).count(t, q); left != 0 { // the first admin connection died with the broker
		t.Fatalf("%d messages left in the queue", left)
	}
}
