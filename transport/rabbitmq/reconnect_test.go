package rabbitmq_test

import (
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// After an outage the transport reaches the returned broker within about a second, whatever
// the outage's length: a relay probes a paused transport at most a second apart, so a
// reconnect backoff that grows past that holds the relay back after the broker is up again.
// The broker is down for 4s (every connection refused and the open ones closed) while a
// prober publishes every 50ms; the first publish that succeeds must come within a second of
// the broker's return.
func TestBackSoonAfterTheBrokerReturns(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	p := newProxy(t, brokerHost(t))
	tr := newTransport(t, rabbitmq.Config{URL: p.url(t, brokerURL()), RoutingKey: q})
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...)); err != nil {
		t.Fatal(err)
	}

	p.refusing.Store(true)
	p.cut()
	down := time.Now()
	var failed int
	for time.Since(down) < 4*time.Second {
		err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...))
		if err == nil {
			t.Fatal("published while the broker was down")
		}
		if !outbox.IsUnavailable(err) {
			t.Fatalf("publish while the broker is down = %v, want an outage", err)
		}
		failed++
		time.Sleep(50 * time.Millisecond) // the prober's pace, not a wait for a condition
	}

	p.refusing.Store(false)
	back := time.Now()
	for {
		err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...))
		if err == nil {
			break
		}
		if time.Since(back) > 10*time.Second {
			t.Fatalf("no publish succeeded within 10s of the broker's return: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(back)
	t.Logf("first publish %s after the broker's return (%d publishes failed during the 4s outage)", took.Round(time.Millisecond), failed)
	if took > time.Second {
		t.Fatalf("first publish %s after the broker's return, want within 1s", took.Round(time.Millisecond))
	}
}
