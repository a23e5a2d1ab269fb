package rabbitmq_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
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
	tr := newTransport(t, rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(p.url(t, brokerURL()))}, RoutingKey: q})
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

// timedTransport records when each publish that succeeded returned.
type timedTransport struct {
	outbox.Transport
	mu  sync.Mutex
	oks []time.Time
}

func (tt *timedTransport) Publish(ctx context.Context, msgs []*outbox.Message) error {
	err := tt.Transport.Publish(ctx, msgs)
	if err == nil {
		tt.mu.Lock()
		tt.oks = append(tt.oks, time.Now())
		tt.mu.Unlock()
	}
	return err
}

// firstAfter is the first successful publish at or after t, or the zero time.
func (tt *timedTransport) firstAfter(t time.Time) time.Time {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for _, ok := range tt.oks {
		if !ok.Before(t) {
			return ok
		}
	}
	return time.Time{}
}

// The same through a relay: events keep being written while the broker is down for 5 s, twice;
// each time the relay publishes again within a second of the broker's return (promise 7: the
// paused relay's probes and the transport's reconnect wait together), charging no attempt.
func TestRelayBackSoonAfterTheBrokerReturns(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	p := newProxy(t, brokerHost(t))
	tr := &timedTransport{Transport: newTransport(t, rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(p.url(t, brokerURL()))}, RoutingKey: q})}
	store := memstore.New()
	relay := runRelay(t, store, tr, outbox.Config{MaxAttempts: 2})

	ctx, stopWriting := context.WithCancel(testCtx(t))
	var writing sync.WaitGroup
	var written atomic.Int64
	writing.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond) // the writers' pace
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := store.Add(ctx, messages(1, "T", "")...); err == nil {
					written.Add(1)
				}
			}
		}
	})
	defer writing.Wait()
	defer stopWriting()

	waitPublished := func(after time.Time) time.Time {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if ok := tr.firstAfter(after); !ok.IsZero() {
				return ok
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("nothing published within 15s after %s", after.Format(time.StampMilli))
		return time.Time{}
	}
	waitPublished(time.Now())
	for round := 1; round <= 2; round++ {
		p.refusing.Store(true)
		p.cut()
		time.Sleep(5 * time.Second) // the outage's length, not a wait for a condition
		p.refusing.Store(false)
		back := time.Now()
		took := waitPublished(back).Sub(back)
		t.Logf("outage %d: the relay published %s after the broker's return", round, took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("outage %d: the relay published %s after the broker's return, want within 1s", round, took.Round(time.Millisecond))
		}
	}
	stopWriting()
	writing.Wait()
	// At least once: what an outage cut between publish and confirm comes again, so read until
	// every written message has come.
	seen := map[string]bool{}
	for len(seen) < int(written.Load()) {
		got, err := b.receive(testCtx(t), q, int(written.Load())-len(seen), false)
		if err != nil {
			t.Fatalf("%d of %d written messages delivered: %v", len(seen), written.Load(), err)
		}
		for _, r := range got {
			seen[r.Msg.ID] = true
		}
	}
	if st := relay.Stats(); st.Dead != 0 || st.Failed != 0 {
		t.Fatalf("stats %+v: an outage must charge no attempt", st)
	}
}
