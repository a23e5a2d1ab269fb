package consume_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
)

// A delivery is acked only after its handler returned nil, and not while it runs.
func TestAckOnlyAfterHandlerReturnedNil(t *testing.T) {
	f := newFake()
	entered := newSignal()
	g := f.newGate(t)
	c := start(t, f, consume.Config{Handler: func(_ context.Context, m *outbox.Message) error {
		entered.fire()
		<-g.ch
		f.note(event{kind: "return", ref: m.ID})
		return nil
	}})
	f.push(nil, f.delivery(t, "d1"))
	await(t, entered.ch, "the handler")
	if n := len(f.of("ack", "")) + len(f.of("nack", "")) + len(f.of("reject", "")); n != 0 {
		t.Fatalf("settled while its handler runs: %v", f.snapshot())
	}
	if s := c.Stats(); s.InFlight != 1 {
		t.Errorf("InFlight %d while the handler runs, want 1", s.InFlight)
	}
	g.open()
	f.waitFor(t, "d1 acked", func() bool { return f.count("ack", "d1") == 1 })
	if ret, ack := f.of("return", "d1")[0], f.of("ack", "d1")[0]; ack.at.Before(ret.at) {
		t.Errorf("acked at %v, before the handler returned at %v", ack.at, ret.at)
	}
}

// A failed handler's delivery is given back with the backoff's delay for its attempt: growing
// by Multiplier from Initial, capped at Max; an attempt the broker does not count (0) is the
// first. The cause is the handler's error.
func TestHandlerErrorNackedWithBackoff(t *testing.T) {
	f := newFake()
	c := start(t, f, consume.Config{
		Backoff: outbox.Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond, Multiplier: 2, Jitter: -1},
		Handler: func(context.Context, *outbox.Message) error { return errHandler },
	})
	want := map[int]time.Duration{0: 10, 1: 10, 2: 20, 3: 40, 4: 40, 60: 40}
	for attempt := range want {
		d := f.delivery(t, fmt.Sprint("a", attempt))
		d.Attempt = attempt
		f.push(nil, d)
	}
	f.waitFor(t, "every delivery nacked", func() bool { return f.count("nack", "") == len(want) })
	for attempt, ms := range want {
		e := f.settleOf(t, fmt.Sprint("a", attempt))
		if e.kind != "nack" || e.delay != ms*time.Millisecond || !errors.Is(e.cause, errHandler) {
			t.Errorf("attempt %d settled by %s(%v, %v), want nack(%v, the handler's error)", attempt, e.kind, e.delay, e.cause, ms*time.Millisecond)
		}
	}
	if s := counted(t, f, c, int64(len(want))); s.Failed != int64(len(want)) || s.Requeued != int64(len(want)) || s.Acked != 0 {
		t.Errorf("stats %+v, want %d failed and requeued, none acked", s, len(want))
	}
}

// MaxDeliveries rejects a failed delivery on that attempt or later, and nacks earlier ones.
func TestMaxDeliveriesRejects(t *testing.T) {
	f := newFake()
	c := start(t, f, consume.Config{
		MaxDeliveries: 3, Backoff: outbox.Backoff{Initial: time.Millisecond, Jitter: -1},
		Handler: func(context.Context, *outbox.Message) error { return errHandler },
	})
	kinds := map[int]string{0: "nack", 2: "nack", 3: "reject", 4: "reject"}
	for attempt := range kinds {
		d := f.delivery(t, fmt.Sprint("a", attempt))
		d.Attempt = attempt
		f.push(nil, d)
	}
	f.waitFor(t, "every delivery settled", func() bool { return f.count("nack", "")+f.count("reject", "") == len(kinds) })
	for attempt, kind := range kinds {
		if e := f.settleOf(t, fmt.Sprint("a", attempt)); e.kind != kind || !errors.Is(e.cause, errHandler) {
			t.Errorf("attempt %d settled by %s(%v), want %s with the handler's error", attempt, e.kind, e.cause, kind)
		}
	}
	if s := counted(t, f, c, 4); s.Rejected != 2 || s.Requeued != 2 || s.Malformed != 0 {
		t.Errorf("stats %+v, want 2 rejected, 2 requeued, none malformed", s)
	}
}

// A panic in a handler is recovered, counts as a failure (Nack with the backoff), and the
// consumer keeps handling.
func TestHandlerPanicIsAFailure(t *testing.T) {
	f := newFake()
	c := start(t, f, consume.Config{
		Backoff: outbox.Backoff{Initial: 7 * time.Millisecond, Jitter: -1},
		Handler: func(_ context.Context, m *outbox.Message) error {
			if m.ID == "boom" {
				panic("boom")
			}
			return nil
		},
	})
	f.push(nil, f.delivery(t, "boom"))
	f.push(nil, f.delivery(t, "after"))
	f.waitFor(t, "after acked", func() bool { return f.count("ack", "after") == 1 })
	e := f.settleOf(t, "boom")
	if e.kind != "nack" || e.delay != 7*time.Millisecond || e.cause == nil || !strings.Contains(e.cause.Error(), "panicked: boom") {
		t.Errorf("the panicking delivery settled by %s(%v, %v), want nack(7ms, the panic)", e.kind, e.delay, e.cause)
	}
	if s := counted(t, f, c, 2); s.Failed != 1 || s.Handled != 1 {
		t.Errorf("stats %+v, want 1 failed and 1 handled", s)
	}
}

// A delivery that cannot be decoded is rejected without calling the handler; the others keep
// flowing.
func TestMalformedRejected(t *testing.T) {
	f := newFake()
	errAttr := errors.New("attribute does not parse")
	c := start(t, f, consume.Config{Handler: ok(f)})
	bad := f.delivery(t, "bad-body")
	bad.Body = []byte(`{"id":"bad-body"`)
	unreadable := f.delivery(t, "bad-attr")
	unreadable.Err = errAttr
	f.push(nil, f.delivery(t, "d1"))
	f.push(nil, bad)
	f.push(nil, unreadable)
	f.push(nil, f.delivery(t, "d2"))
	f.waitFor(t, "d1 and d2 acked, the malformed rejected", func() bool {
		return f.count("ack", "") == 2 && f.count("reject", "") == 2
	})
	if e := f.settleOf(t, "bad-attr"); e.kind != "reject" || !errors.Is(e.cause, errAttr) {
		t.Errorf("bad-attr settled by %s(%v), want reject with the adapter's error", e.kind, e.cause)
	}
	if e := f.settleOf(t, "bad-body"); e.kind != "reject" || e.cause == nil {
		t.Errorf("bad-body settled by %s(%v), want reject with the decode error", e.kind, e.cause)
	}
	if n := f.count("handle", "bad-body") + f.count("handle", "bad-attr"); n != 0 {
		t.Errorf("the handler was called %d times for malformed deliveries", n)
	}
	if s := counted(t, f, c, 4); s.Malformed != 2 || s.Rejected != 2 || s.Handled != 2 || s.Failed != 0 {
		t.Errorf("stats %+v, want 2 malformed and rejected, 2 handled", s)
	}
}

// A failed Receive is counted and retried; deliveries it returned with its error are handled.
func TestReceiveErrorRetried(t *testing.T) {
	f := newFake()
	c := start(t, f, consume.Config{Handler: ok(f)})
	f.push(errors.New("connection reset"), f.delivery(t, "with-error"))
	f.push(errors.New("connection reset"))
	f.push(nil, f.delivery(t, "after"))
	f.waitFor(t, "both acked", func() bool { return f.count("ack", "") == 2 })
	if s := c.Stats(); s.ReceiveErrors != 2 {
		t.Errorf("ReceiveErrors %d, want 2", s.ReceiveErrors)
	}
}

// Never more than Concurrency handlers run at once, and Receive is never asked for more than
// the free slots; the bound is reached.
func TestConcurrencyBound(t *testing.T) {
	const limit, total = 3, 12
	f := newFake()
	f.maxAsk = 2
	var running, most atomic.Int64
	release := make(chan struct{})
	g := f.newGate(t)
	c := start(t, f, consume.Config{Concurrency: limit, ReceiveBatch: 2, Handler: func(ctx context.Context, m *outbox.Message) error {
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		f.note(event{kind: "handle", ref: m.ID})
		select {
		case <-release:
		case <-g.ch:
		}
		running.Add(-1)
		return nil
	}})
	for i := range total {
		f.push(nil, f.delivery(t, fmt.Sprint("d", i)))
	}
	for i := range total {
		if i == 0 {
			// let every free slot fill before the first handler returns
			f.waitFor(t, "the first handlers", func() bool { return f.count("handle", "") >= limit })
		}
		select {
		case release <- struct{}{}:
		case <-time.After(wait):
			t.Fatalf("handler %d never came: %+v", i, c.Stats())
		}
	}
	f.waitFor(t, "every delivery acked", func() bool { return f.count("ack", "") == total })
	if m := most.Load(); m != limit {
		t.Errorf("at most %d handlers ran at once, want %d", m, limit)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.asked {
		if n > 2 {
			t.Errorf("Receive asked for %d, above ReceiveBatch", n)
		}
	}
}

// Stats count what happened: every counter, settle errors included.
func TestStats(t *testing.T) {
	f := newFake()
	c := start(t, f, consume.Config{
		Concurrency: 4, Backoff: outbox.Backoff{Initial: time.Millisecond, Jitter: -1},
		Handler: func(_ context.Context, m *outbox.Message) error {
			if strings.HasPrefix(m.ID, "fail") {
				return errHandler
			}
			return nil
		},
	})
	errSettle := errors.New("broker gone")
	ackFails := f.delivery(t, "ok-ackfails")
	ackFails.Settler.(*settler).ackErr = errSettle
	nackFails := f.delivery(t, "fail-nackfails")
	nackFails.Settler.(*settler).nackErr = errSettle
	bad := f.delivery(t, "bad")
	bad.Body = []byte("not json")
	badRejectFails := f.delivery(t, "bad-rejectfails")
	badRejectFails.Body = []byte("not json")
	badRejectFails.Settler.(*settler).rejectErr = errSettle
	f.push(errors.New("receive failed"), f.delivery(t, "ok"), ackFails)
	f.push(nil, f.delivery(t, "fail"), nackFails, bad, badRejectFails)
	f.waitFor(t, "every delivery settled", func() bool {
		return f.count("ack", "")+f.count("nack", "")+f.count("reject", "") == 6
	})
	want := consume.Stats{
		Received: 6, Handled: 2, Failed: 2, Malformed: 2, Acked: 1, AckErrors: 1,
		Requeued: 1, Rejected: 1, SettleErrors: 2, ReceiveErrors: 1,
	}
	if got := counted(t, f, c, 6); got != want {
		t.Errorf("stats\n %+v, want\n %+v", got, want)
	}
}
