package rabbitmq_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// batchError returns err as a *outbox.BatchError, failing the test when it is not one.
func batchError(t *testing.T, err error) *outbox.BatchError {
	t.Helper()
	var be *outbox.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("publish = %v, want a *outbox.BatchError", err)
	}
	return be
}

// wantFailed checks that exactly the messages ids failed.
func wantFailed(t *testing.T, be *outbox.BatchError, ids ...string) {
	t.Helper()
	if len(be.Failed) != len(ids) {
		t.Fatalf("%d messages failed, want %d: %v", len(be.Failed), len(ids), be)
	}
	for _, id := range ids {
		if be.Failed[id] == nil {
			t.Fatalf("message %s did not fail: %v", id, be)
		}
	}
}

// The broker's view of every property and header the transport sets.
func TestPublishedProperties(t *testing.T) {
	b := needBroker(t)
	for _, raw := range []bool{false, true} {
		q := b.queue(t, nil)
		tr := newTransport(t, rabbitmq.Config{RoutingKey: q, RawPayload: raw})
		in := prepared(t, &outbox.Message{Type: "USER_CREATED", Key: "user-7", Payload: []byte(`{"a":1}`),
			Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "empty": ""}})[0]
		if err := tr.Publish(testCtx(t), []*outbox.Message{in}); err != nil {
			t.Fatal(err)
		}
		got, err := b.receive(testCtx(t), q, 1, raw)
		if err != nil {
			t.Fatal(err)
		}
		d := got[0].D
		switch {
		case d.MessageId != in.ID || d.Type != in.Type:
			t.Errorf("raw=%t: message-id %q type %q, want %q %q", raw, d.MessageId, d.Type, in.ID, in.Type)
		case d.DeliveryMode != amqp.Persistent:
			t.Errorf("raw=%t: delivery mode %d, want persistent", raw, d.DeliveryMode)
		case d.ContentType != "application/json":
			t.Errorf("raw=%t: content type %q", raw, d.ContentType)
		case d.Headers[rabbitmq.HeaderType] != "USER_CREATED" || d.Headers[rabbitmq.HeaderKey] != "user-7":
			t.Errorf("raw=%t: headers %v", raw, d.Headers)
		case d.Headers["traceparent"] != in.Headers["traceparent"] || d.Headers["empty"] != "":
			t.Errorf("raw=%t: headers %v", raw, d.Headers)
		case d.Timestamp.Unix() != in.CreatedAt.Unix():
			t.Errorf("raw=%t: timestamp %v, want %v", raw, d.Timestamp, in.CreatedAt)
		case raw && string(d.Body) != `{"a":1}`:
			t.Errorf("raw body %s", d.Body)
		case !raw && got[0].Msg.ID != in.ID:
			t.Errorf("envelope %s", d.Body)
		}
	}
}

// Exchange and routing-key template route each message by Type and Key.
func TestRoutingTemplate(t *testing.T) {
	b := needBroker(t)
	x := b.exchange(t, amqp.ExchangeTopic)
	orders, users := b.queue(t, nil), b.queue(t, nil)
	b.bind(t, orders, "ev.ORDER_PLACED.*", x)
	b.bind(t, users, "ev.USER_CREATED.#", x)
	tr := newTransport(t, rabbitmq.Config{Exchange: x, RoutingKey: "ev.{type}.{key}"})
	msgs := prepared(t, append(messages(3, "ORDER_PLACED", "o1"), messages(2, "USER_CREATED", "u1")...)...)
	if err := tr.Publish(testCtx(t), msgs); err != nil {
		t.Fatal(err)
	}
	if got, err := b.receive(testCtx(t), orders, 3, false); err != nil || got[0].D.RoutingKey != "ev.ORDER_PLACED.o1" {
		t.Fatalf("orders: %v %v", err, got)
	}
	if _, err := b.receive(testCtx(t), users, 2, false); err != nil {
		t.Fatal(err)
	}
}

// A message no queue takes is returned by the broker (mandatory) and fails, as an outage of
// the destination; the others of the batch are published.
func TestUnroutableFails(t *testing.T) {
	b := needBroker(t)
	x := b.exchange(t, amqp.ExchangeDirect)
	q := b.queue(t, nil)
	b.bind(t, q, "good", x)
	tr := newTransport(t, rabbitmq.Config{Exchange: x, Route: func(m *outbox.Message) (string, string) {
		return x, m.Type
	}})
	msgs := prepared(t, append(append(messages(3, "good", ""), messages(1, "nowhere", "")...), messages(3, "good", "")...)...)
	be := batchError(t, tr.Publish(testCtx(t), msgs))
	wantFailed(t, be, msgs[3].ID)
	err := be.Failed[msgs[3].ID]
	if !outbox.IsUnavailable(err) || outbox.IsPermanent(err) || !strings.Contains(err.Error(), "unroutable") {
		t.Fatalf("unroutable failure %v: want an outage naming it", err)
	}
	got, err := b.receive(testCtx(t), q, 6, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Msg.ID == msgs[3].ID {
			t.Fatal("the unroutable message arrived")
		}
	}
	// Every message unroutable: one outage error for the whole call.
	if err := tr.Publish(testCtx(t), prepared(t, messages(2, "nowhere", "")...)); !outbox.IsUnavailable(err) {
		t.Fatalf("all unroutable = %v, want an outage", err)
	}
}

// A message the broker nacks fails; the ones it acknowledged are published.
func TestNackFails(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, amqp.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"})
	tr := newTransport(t, rabbitmq.Config{RoutingKey: q})
	msgs := prepared(t, messages(5, "T", "")...)
	be := batchError(t, tr.Publish(testCtx(t), msgs))
	wantFailed(t, be, msgs[2].ID, msgs[3].ID, msgs[4].ID)
	if err := be.Failed[msgs[2].ID]; !strings.Contains(err.Error(), "basic.nack") || !outbox.IsUnavailable(err) {
		t.Fatalf("nack failure %v", err)
	}
	got, err := b.receive(testCtx(t), q, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	outboxtest.CheckDelivery(t, msgs[:2], []*outbox.Message{got[0].Msg, got[1].Msg}, outboxtest.DeliveryCheck{})
}

// A missing exchange fails only its own messages, as an outage, and leaves the channel open
// for the rest.
func TestMissingExchange(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	missing := name(t, "missing")
	tr := newTransport(t, rabbitmq.Config{Route: func(m *outbox.Message) (string, string) {
		if m.Type == "LOST" {
			return missing, "k"
		}
		return "", q
	}})
	msgs := prepared(t, append(messages(2, "T", ""), messages(1, "LOST", "")...)...)
	be := batchError(t, tr.Publish(testCtx(t), msgs))
	wantFailed(t, be, msgs[2].ID)
	if err := be.Failed[msgs[2].ID]; !outbox.IsUnavailable(err) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing exchange failure %v", err)
	}
	if err := tr.Publish(testCtx(t), prepared(t, messages(3, "T", "")...)); err != nil {
		t.Fatalf("publish after a missing exchange: %v", err)
	}
	if _, err := b.receive(testCtx(t), q, 5, false); err != nil {
		t.Fatal(err)
	}
}

// Messages the transport cannot send fail permanently on their own, before anything is sent.
func TestPermanentFailures(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	tr := newTransport(t, rabbitmq.Config{Route: func(m *outbox.Message) (string, string) {
		if m.Type == "LONG" {
			return "", strings.Repeat("k", 256)
		}
		return "", q
	}})
	msgs := prepared(t, messages(4, "T", "")...)
	msgs[1].Headers = map[string]string{rabbitmq.HeaderType: "spoofed"}
	msgs[2].Type = "LONG"
	msgs[3].Payload = []byte(`{not json`)
	be := batchError(t, tr.Publish(testCtx(t), msgs))
	wantFailed(t, be, msgs[1].ID, msgs[2].ID, msgs[3].ID)
	for id, err := range be.Failed {
		if !outbox.IsPermanent(err) {
			t.Errorf("%s: %v is not permanent", id, err)
		}
	}
	if _, err := b.receive(testCtx(t), q, 1, false); err != nil {
		t.Fatal(err)
	}
}

// A batch whose confirms never come, because the connection dies after the broker took the
// messages, reports none of them published; the next Publish reconnects.
func TestUnconfirmedNeverReportedPublished(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	u, _ := url.Parse(b.url)
	p := newProxy(t, u.Host)
	tr := newTransport(t, rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(p.url(t, b.url)), ReconnectMin: time.Millisecond}, RoutingKey: q})
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "warm-up", "")...)); err != nil {
		t.Fatal(err)
	}

	p.muted.Store(true) // from now on the broker's confirms never reach the transport
	msgs := prepared(t, messages(200, "T", "")...)
	result := make(chan error, 1)
	go func() { result <- tr.Publish(testCtx(t), msgs) }()
	deadline := time.Now().Add(30 * time.Second)
	for b.count(t, q) < 201 { // the broker holds every message of the batch
		if time.Now().After(deadline) {
			t.Fatalf("the broker holds %d of 201 messages", b.count(t, q))
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.cut()
	err := <-result
	var be *outbox.BatchError
	if errors.As(err, &be) {
		t.Fatalf("publish = %v: %d messages would be reported published without a confirm", err, len(msgs)-len(be.Failed))
	}
	if !errors.Is(err, rabbitmq.ErrConnectionLost) || !outbox.IsUnavailable(err) {
		t.Fatalf("publish = %v, want every message failed with ErrConnectionLost, as an outage", err)
	}

	p.muted.Store(false)
	next := prepared(t, messages(3, "T", "")...)
	waitPublished(t, tr, next)
	if p.connections() < 2 {
		t.Fatalf("%d connection(s): the transport did not dial again", p.connections())
	}
}

// waitPublished publishes msgs until it succeeds, within the reconnect backoff.
func waitPublished(t *testing.T, tr outbox.Transport, msgs []*outbox.Message) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := tr.Publish(testCtx(t), msgs)
		if err == nil {
			return
		}
		if !outbox.IsUnavailable(err) || time.Now().After(deadline) {
			t.Fatalf("publish: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An unreachable broker is an outage; a Publish inside the reconnect backoff fails at once
// without dialing.
func TestConnectionRefused(t *testing.T) {
	tr := newTransport(t, rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqp://guest:guest@127.0.0.1:1/", ReconnectMin: time.Hour, ReconnectMax: time.Hour}})
	msgs := prepared(t, messages(2, "T", "")...)
	err := tr.Publish(testCtx(t), msgs)
	if !outbox.IsUnavailable(err) || !strings.Contains(err.Error(), "connect to 127.0.0.1:1") {
		t.Fatalf("publish to a closed port = %v, want an outage naming the address", err)
	}
	start := time.Now()
	err = tr.Publish(testCtx(t), msgs)
	if !outbox.IsUnavailable(err) || !strings.Contains(err.Error(), "reconnecting in") || time.Since(start) > time.Second {
		t.Fatalf("publish inside the backoff = %v after %s, want an immediate outage", err, time.Since(start))
	}
}

// Rejected credentials are an outage (the relay's configuration, not the messages' fault),
// and the password never shows.
func TestAccessRefused(t *testing.T) {
	t.Parallel() // the broker delays its answer to a failed login by a few seconds
	b := needBroker(t)
	u, _ := url.Parse(b.url)
	u.User = url.UserPassword("outbox-nobody", "wrong-password-never-printed")
	tr := newTransport(t, rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(u.String())}, RoutingKey: "q"})
	err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...))
	if !outbox.IsUnavailable(err) || outbox.IsPermanent(err) {
		t.Fatalf("publish with a wrong password = %v, want an outage", err)
	}
	if strings.Contains(err.Error(), "wrong-password-never-printed") {
		t.Fatalf("the error shows the password: %v", err)
	}
}

// Concurrent Publish calls share the channel; each learns exactly its own messages' fate.
func TestConcurrentPublishes(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	tr := newTransport(t, rabbitmq.Config{RoutingKey: q})
	var all []*outbox.Message
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		msgs := prepared(t, messages(100, "T", "")...)
		mu.Lock()
		all = append(all, msgs...)
		mu.Unlock()
		wg.Go(func() {
			if err := tr.Publish(testCtx(t), msgs); err != nil {
				t.Errorf("publish: %v", err)
			}
		})
	}
	wg.Wait()
	got, err := b.receive(testCtx(t), q, len(all), false)
	if err != nil {
		t.Fatal(err)
	}
	delivered := make([]*outbox.Message, len(got))
	for i, r := range got {
		delivered[i] = r.Msg
	}
	outboxtest.CheckDelivery(t, all, delivered, outboxtest.DeliveryCheck{})
}

// With KeepKeyOrder a Key stops at its first failure: its later messages are held back, never
// sent, while other keys flow; without it, the later messages are sent anyway.
func TestKeyOrderStopsAKeyAtItsFirstFailure(t *testing.T) {
	b := needBroker(t)
	x := b.exchange(t, amqp.ExchangeDirect)
	for _, keyOrder := range []bool{true, false} {
		q := b.queue(t, nil)
		b.bind(t, q, q, x)
		tr := newTransport(t, rabbitmq.Config{Exchange: x, KeepKeyOrder: keyOrder, Route: func(m *outbox.Message) (string, string) {
			if m.Type == "UNROUTABLE" {
				return x, "nowhere"
			}
			return x, q
		}})
		if tr.KeepsKeyOrder() != keyOrder {
			t.Fatalf("KeepsKeyOrder = %t with KeepKeyOrder %t", tr.KeepsKeyOrder(), keyOrder)
		}
		a, bb := messages(4, "T", "a"), messages(3, "T", "b")
		a[1].Type = "UNROUTABLE"
		msgs := prepared(t, a[0], bb[0], a[1], bb[1], a[2], a[3], bb[2])
		be := batchError(t, tr.Publish(testCtx(t), msgs))
		if !keyOrder {
			wantFailed(t, be, a[1].ID)
			got, err := b.receive(testCtx(t), q, 6, false)
			if err != nil {
				t.Fatal(err)
			}
			if got[len(got)-1].Msg.ID != bb[2].ID {
				t.Fatalf("without KeepKeyOrder the batch goes out in slice order; last received %s", got[len(got)-1].Msg.ID)
			}
			continue
		}
		wantFailed(t, be, a[1].ID, a[2].ID, a[3].ID)
		for _, m := range []*outbox.Message{a[2], a[3]} {
			if err := be.Failed[m.ID]; !strings.Contains(err.Error(), "held back") || outbox.IsPermanent(err) {
				t.Fatalf("later message of the failed key: %v, want held back, retryable", err)
			}
		}
		got, err := b.receive(testCtx(t), q, 4, false)
		if err != nil {
			t.Fatal(err)
		}
		delivered := make([]*outbox.Message, len(got))
		for i, r := range got {
			delivered[i] = r.Msg
		}
		outboxtest.CheckDelivery(t, []*outbox.Message{a[0], bb[0], bb[1], bb[2]}, delivered, outboxtest.DeliveryCheck{Ordered: true})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		extra, _ := b.receive(ctx, q, 1, false)
		cancel()
		if len(extra) > 0 {
			t.Fatalf("a held-back message arrived: %s", extra[0].Msg.ID)
		}
	}
}

// A cancelled context stops a Publish without reporting anything published.
func TestCancelledWhileWaiting(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	u, _ := url.Parse(b.url)
	p := newProxy(t, u.Host)
	tr := newTransport(t, rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(p.url(t, b.url))}, RoutingKey: q})
	t.Cleanup(p.cut) // before the transport's Close, which would wait for a close-ok in vain
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "warm-up", "")...)); err != nil {
		t.Fatal(err)
	}
	p.muted.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := tr.Publish(ctx, prepared(t, messages(5, "T", "")...))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish without confirms until the deadline = %v, want the deadline's error", err)
	}
}

// A broker that stops reading holds a Publish's socket writes; WriteTimeout closes the
// connection so that the Publish fails, as an outage, instead of hanging past its deadline.
func TestStalledWritesFail(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	u, _ := url.Parse(b.url)
	p := newProxy(t, u.Host)
	tr := newTransport(t, rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(p.url(t, b.url)), WriteTimeout: 300 * time.Millisecond}, RoutingKey: q})
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "warm-up", "")...)); err != nil {
		t.Fatal(err)
	}
	p.stall.Lock()
	stalled := true
	t.Cleanup(func() {
		if stalled {
			p.stall.Unlock()
		}
	})
	msgs := prepared(t, messages(48, "T", "")...)
	big := []byte(`"` + strings.Repeat("x", 1<<20) + `"`)
	for _, m := range msgs {
		m.Payload = big // 48 MiB in all: far more than the socket buffers hold
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := tr.Publish(ctx, msgs)
	if !outbox.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("publish into a stalled socket = %v after %s, want an outage well before the deadline", err, time.Since(start))
	}
	var be *outbox.BatchError
	if errors.As(err, &be) && len(be.Failed) == len(msgs) {
		t.Logf("every message failed on its own: %v", be)
	} else if be != nil {
		t.Fatalf("%d of %d messages reported published through a stalled socket", len(msgs)-len(be.Failed), len(msgs))
	}
	stalled = false
	p.stall.Unlock()
	waitPublished(t, tr, prepared(t, messages(2, "after", "")...))
}
