package consume_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
)

// ok is a handler that records its calls and succeeds.
func ok(f *fakeAdapter) consume.Handler {
	return func(_ context.Context, m *outbox.Message) error {
		f.note(event{kind: "handle", ref: m.ID})
		return nil
	}
}

func TestStartTwice(t *testing.T) {
	f := newFake()
	c := start(t, f, consume.Config{Handler: ok(f)})
	if err := c.Start(context.Background()); !errors.Is(err, outbox.ErrConsumerStarted) {
		t.Fatalf("second Start: %v, want ErrConsumerStarted", err)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := c.Start(context.Background()); !errors.Is(err, outbox.ErrConsumerStarted) {
		t.Fatalf("Start after Stop: %v, want ErrConsumerStarted", err)
	}
	if n := f.count("open", ""); n != 1 {
		t.Errorf("Open called %d times, want once", n)
	}
}

func TestStopBeforeStart(t *testing.T) {
	f := newFake()
	c := newConsumer(t, f, consume.Config{Handler: ok(f)})
	if err := c.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if err := c.Start(context.Background()); !errors.Is(err, outbox.ErrConsumerStarted) {
		t.Fatalf("Start after Stop: %v, want ErrConsumerStarted", err)
	}
	if n, m := f.count("open", ""), f.count("close", ""); n != 0 || m != 1 {
		t.Errorf("Open called %d times, Close %d, want 0 and 1", n, m)
	}
}

// A failed Open fails Start with its error; Close is not called for it, and Start may be
// called again.
func TestOpenFails(t *testing.T) {
	f := newFake()
	errOpen := errors.New("no broker")
	f.openErr = errOpen
	c := newConsumer(t, f, consume.Config{Handler: ok(f)})
	if err := c.Start(context.Background()); !errors.Is(err, errOpen) {
		t.Fatalf("start: %v, want the Open error", err)
	}
	if n := f.count("close", ""); n != 0 {
		t.Fatalf("Close called %d times after the failed Open", n)
	}
	f.mu.Lock()
	f.openErr = nil
	f.mu.Unlock()
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("Start after a failed Open: %v", err)
	}
	f.push(nil, f.delivery(t, "d1"))
	f.waitFor(t, "d1 acked", func() bool { return f.count("ack", "d1") == 1 })
}

func TestRunOpenFails(t *testing.T) {
	f := newFake()
	errOpen := errors.New("no broker")
	f.openErr = errOpen
	c := newConsumer(t, f, consume.Config{Handler: ok(f)})
	if err := c.Run(context.Background()); !errors.Is(err, errOpen) {
		t.Fatalf("run: %v, want the Open error", err)
	}
}

func TestRunReturnsWhenContextEnds(t *testing.T) {
	f := newFake()
	c := newConsumer(t, f, consume.Config{Handler: ok(f)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	f.push(nil, f.delivery(t, "d1"))
	f.waitFor(t, "d1 acked", func() bool { return f.count("ack", "d1") == 1 })
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after its context ended")
	}
	if n := f.count("close", ""); n != 1 {
		t.Errorf("Close called %d times, want once", n)
	}
}

// Stop waits for a handler that finishes before its deadline: the delivery is acked, Close
// comes after, and Stop returns nil.
func TestStopWaitsForHandler(t *testing.T) {
	f := newFake()
	entered := newSignal()
	g := f.newGate(t)
	c := start(t, f, consume.Config{Concurrency: 2, Handler: func(_ context.Context, m *outbox.Message) error {
		entered.fire()
		<-g.ch
		return nil
	}})
	f.push(nil, f.delivery(t, "d1"))
	await(t, entered.ch, "the handler")
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		stopped <- c.Stop(ctx)
	}()
	f.waitFor(t, "Receive to return for the stop", func() bool { return f.count("receive-end", "") > 0 })
	g.open()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Stop did not return after the handler did")
	}
	if e := f.settleOf(t, "d1"); e.kind != "ack" {
		t.Fatalf("d1 settled by %s, want ack", e.kind)
	}
	ev := f.snapshot()
	if last := ev[len(ev)-1]; last.kind != "close" {
		t.Errorf("last call %s, want close after the ack", last.kind)
	}
}

// A handler that never returns does not hold Stop past its deadline and grace: its context is
// cancelled, its delivery is given back with Nack(0, ErrStopped) before Close, and it is not
// acked when the handler returns at last.
func TestStopGivesBackHandlerThatNeverReturns(t *testing.T) {
	f := newFake()
	entered, cancelled := newSignal(), newSignal()
	g := f.newGate(t)
	const grace = 100 * time.Millisecond
	c := start(t, f, consume.Config{StopGrace: grace, Handler: func(ctx context.Context, m *outbox.Message) error {
		entered.fire()
		<-ctx.Done()
		cancelled.fire()
		<-g.ch // ignores its context: returns only when the test lets it
		return nil
	}})
	f.push(nil, f.delivery(t, "d1"))
	await(t, entered.ch, "the handler")

	const deadline = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	began := time.Now()
	err := c.Stop(ctx)
	took := time.Since(began)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stop: %v, want the deadline's error", err)
	}
	if bound := deadline + grace + time.Second; took > bound || took < deadline {
		t.Errorf("Stop took %v, want between %v and %v", took, deadline, bound)
	}
	await(t, cancelled.ch, "the handler's context to end")
	e := f.settleOf(t, "d1")
	if e.kind != "nack" || e.delay != 0 || !errors.Is(e.cause, consume.ErrStopped) {
		t.Fatalf("d1 settled by %s(%v, %v), want nack(0, ErrStopped)", e.kind, e.delay, e.cause)
	}
	if f.count("close", "") != 1 || f.of("close", "")[0].at.Before(e.at) {
		t.Fatalf("Close not called once after the nack: %v", f.snapshot())
	}

	g.open()
	ctx2, cancel2 := context.WithTimeout(context.Background(), wait)
	defer cancel2()
	if err := c.Stop(ctx2); err != nil { // waits for the handler again
		t.Fatalf("second stop: %v", err)
	}
	if n := f.count("ack", "d1"); n != 0 {
		t.Errorf("d1 acked %d times after it was given back", n)
	}
}

// A handler that returns its context's error when Stop cancels it is a stop, not a failure
// of the message: its delivery is given back with ErrStopped even on its last delivery, never
// rejected (Stop's doc: their deliveries are given back with Nack).
func TestStopCancelledHandlerIsGivenBackNotRejected(t *testing.T) {
	f := newFake()
	entered := newSignal()
	c := start(t, f, consume.Config{StopGrace: time.Second, MaxDeliveries: 3, Handler: func(ctx context.Context, m *outbox.Message) error {
		entered.fire()
		<-ctx.Done()
		return ctx.Err()
	}})
	d := f.delivery(t, "d1")
	d.Attempt = 3
	f.push(nil, d)
	await(t, entered.ch, "the handler")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stop: %v, want the deadline's error", err)
	}
	e := f.settleOf(t, "d1")
	if e.kind != "nack" || e.delay != 0 || !errors.Is(e.cause, consume.ErrStopped) || !errors.Is(e.cause, context.Canceled) {
		t.Fatalf("d1 settled by %s(%v, %v), want nack(0, ErrStopped wrapping the handler's error)", e.kind, e.delay, e.cause)
	}
}
