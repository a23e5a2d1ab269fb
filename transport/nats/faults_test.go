package nats_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// The server is killed and restarted twice while a relay publishes and a writer keeps adding
// messages. Afterwards a consumer reads the stream back: every message is there (0 lost),
// none was dead-lettered nor charged an attempt for the outage, each key kept its order in
// ordered mode, and duplicates stay within what promise 3 allows (publishes in flight at a
// crash; JetStream's duplicate window, kept across the restart, drops them).
func TestServerRestartMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: restarts a private nats-server (skipped with -short)")
	}
	for _, c := range []struct {
		name    string
		ordered bool
		keys    int
	}{
		{"unordered", false, 0},
		{"ordered, 50 keys", true, 50},
	} {
		t.Run(c.name, func(t *testing.T) { restartMidStream(t, c.ordered, c.keys) })
	}
}

func restartMidStream(t *testing.T, ordered bool, keys int) {
	const (
		total     = 4000
		chunk     = 40
		batchSize = 100
		inFlight  = 2 // relay Concurrency
	)
	p := startPrivate(t)
	admin := dialServer(t, p.url, "private nats-server at "+p.url)
	st := admin.createStream(t, func(c *jetstream.StreamConfig) {
		c.Storage = jetstream.FileStorage // survives the restart
		c.Duplicates = 2 * time.Minute
	})
	tr := newTransport(t, outboxnats.Config{
		Connection:   outboxnats.Connection{URL: outboxnats.URL(p.url), ConnectTimeout: time.Second, ReconnectWait: 20 * time.Millisecond},
		Subject:      st.subject(),
		KeepKeyOrder: ordered,
		AckTimeout:   time.Second,
	})

	var msgs []*outbox.Message
	for i := range total {
		key := ""
		if keys > 0 {
			key = fmt.Sprintf("k%d", i%keys)
		}
		msgs = append(msgs, messages(1, "T", key)...)
	}
	store := memstore.New()
	relay := runRelay(t, store, tr, outbox.Config{
		Unordered: !ordered, BatchSize: batchSize, Concurrency: inFlight,
		// Far more attempts than the test can use: a message dead-lettered would mean the
		// relay charged the outage to it.
		MaxAttempts: 10000, Lease: 10 * time.Second, PublishTimeout: 3 * time.Second,
		Backoff: outbox.Backoff{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond},
	})

	// The writer: chunks of messages at a steady pace, as a service would commit them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	writeErr := make(chan error, 1)
	wg.Go(func() {
		tick := time.NewTicker(15 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < total; i += chunk {
			if err := store.Add(ctx, msgs[i:min(i+chunk, total)]...); err != nil {
				writeErr <- err
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	defer wg.Wait()

	// Two crashes, each once the relay is well into the stream.
	for _, at := range []int64{total / 4, total * 5 / 8} {
		deadline := time.Now().Add(30 * time.Second)
		for relay.Stats().Published < at {
			if time.Now().After(deadline) {
				t.Fatalf("the relay published %d, never reached %d; stats %+v", relay.Stats().Published, at, relay.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
		p.restart()
	}

	wg.Wait()
	select {
	case err := <-writeErr:
		t.Fatal(err)
	default:
	}
	counts := waitCounts(t, store, 45*time.Second, func(c outbox.Counts) bool { return c.Pending == 0 })
	if rs := relay.Stats(); rs.Dead != 0 || counts.Dead != 0 {
		t.Fatalf("dead-lettered: relay stats %+v, store counts %+v", rs, counts)
	}
	// Every failure the restarts caused is an outage (promise 7): released, never an attempt.
	if rs := relay.Stats(); rs.Failed != 0 {
		t.Errorf("%d failed attempts were charged for the outage; relay stats %+v", rs.Failed, rs)
	}
	// The admin connection reconnects by itself; wait until the stream answers again.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := st.js.Info(testCtx(t))
		if err == nil {
			break
		}
		if time.Now().After(deadline) || errors.Is(err, context.Canceled) {
			t.Fatalf("stream info after the restarts: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	dups := checkStream(t, st, msgs, ordered, 2*inFlight*batchSize)
	t.Logf("%d messages, 0 lost, 0 dead, %d duplicates in the stream, %d republishes dropped by the duplicate window; relay %+v",
		total, dups, tr.Stats().Duplicates, relay.Stats())
}

// While the connection is down, Publish fails at once, as an outage, and succeeds again once
// the server is back.
func TestPublishWhileDisconnected(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: stops a private nats-server (skipped with -short)")
	}
	p := startPrivate(t)
	admin := dialServer(t, p.url, "private nats-server at "+p.url)
	st := admin.createStream(t, func(c *jetstream.StreamConfig) { c.Storage = jetstream.FileStorage })
	tr := newTransport(t, outboxnats.Config{Connection: outboxnats.Connection{URL: outboxnats.URL(p.url), ReconnectWait: 20 * time.Millisecond}, Subject: st.subject()})
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...)); err != nil {
		t.Fatal(err)
	}

	p.kill()
	deadline := time.Now().Add(10 * time.Second)
	for tr.Conn().IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("the connection did not notice the server was gone")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	err := tr.Publish(testCtx(t), prepared(t, messages(3, "T", "")...))
	if err == nil || !outbox.IsUnavailable(err) || outbox.IsPermanent(err) {
		t.Fatalf("publish while disconnected = %v, want an Unavailable error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("publish while disconnected took %v, want an immediate failure", d)
	}

	p.start()
	deadline = time.Now().Add(15 * time.Second)
	for !tr.Conn().IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("the transport did not reconnect")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// JetStream may need a moment after the restart to recover the stream: retry on outages only.
	deadline = time.Now().Add(15 * time.Second)
	for {
		err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...))
		if err == nil {
			break
		}
		if !outbox.IsUnavailable(err) || time.Now().After(deadline) {
			t.Fatalf("publish after the restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A server that stops answering (frozen) fails each message after AckTimeout, as an outage,
// and a context that ends first ends the Publish at once; the stream may still store those
// messages, and its duplicate window drops their republish once the server answers again.
func TestUnansweredPubAcks(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: freezes a private nats-server (skipped with -short)")
	}
	p := startPrivate(t)
	admin := dialServer(t, p.url, "private nats-server at "+p.url)
	st := admin.createStream(t, nil)
	tr := newTransport(t, outboxnats.Config{Connection: outboxnats.Connection{URL: outboxnats.URL(p.url)}, Subject: st.subject(), AckTimeout: 300 * time.Millisecond})
	in := prepared(t, messages(5, "T", "")...)
	if err := tr.Publish(testCtx(t), in[:1]); err != nil {
		t.Fatal(err)
	}

	p.freeze()
	thawed := false
	defer func() {
		if !thawed {
			p.thaw()
		}
	}()
	start := time.Now()
	err := tr.Publish(testCtx(t), in[1:3])
	if d := time.Since(start); err == nil || !outbox.IsUnavailable(err) || d > 5*time.Second {
		t.Fatalf("publish to a frozen server = %v after %v, want an Unavailable error after about AckTimeout", err, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = tr.Publish(ctx, in[3:])
	if d := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || d > 2*time.Second {
		t.Fatalf("publish with a 50ms context = %v after %v, want the context's error at once", err, d)
	}
	p.thaw()
	thawed = true

	// Once it answers again, everything goes through; republishes of what it had stored are
	// dropped as duplicates.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := tr.Publish(testCtx(t), in)
		if err == nil {
			break
		}
		if !outbox.IsUnavailable(err) || time.Now().After(deadline) {
			t.Fatalf("publish after the thaw: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := st.count(t); n != uint64(len(in)) {
		t.Fatalf("the stream holds %d messages, want %d once each", n, len(in))
	}
}
