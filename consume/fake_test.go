package consume_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/consume"
)

// wait bounds every wait of these tests.
const wait = 5 * time.Second

// event is one call the fake saw, of the adapter, of a settler, or of the test's handler.
type event struct {
	kind  string // open, receive, close, ack, nack, reject, extend, handle, return
	ref   string
	delay time.Duration
	cause error
	at    time.Time
}

// batch is what one Receive call hands out (at most max of it; the rest stays for the next).
type batch struct {
	ds  []consume.Delivery
	err error
}

// fakeAdapter is a broker in memory. It records every call, hands out the batches queued with
// push in order, can fail Open and Receive, and checks the contract as it goes: no call after
// Close, Receive after Open and never asked for more than maxAsk, each delivery settled once,
// no Extend after its delivery was settled.
type fakeAdapter struct {
	maxAsk int // the most deliveries one Receive may be asked for; 0: not checked

	mu        sync.Mutex
	openErr   error
	queue     []batch
	opened    bool
	closed    bool
	events    []event
	changed   chan struct{} // closed and replaced on every event
	asked     []int         // Receive's max, per call
	handedOut []string      // refs, in the order received
	settled   map[string]int
	received  map[string]time.Time
	broken    []string // contract violations
	gates     []*gate
}

func newFake() *fakeAdapter {
	return &fakeAdapter{changed: make(chan struct{}), settled: map[string]int{}, received: map[string]time.Time{}}
}

// record appends an event and wakes every waiter; the caller holds f.mu.
func (f *fakeAdapter) record(e event) {
	e.at = time.Now()
	if f.closed && e.kind != "handle" && e.kind != "return" && e.kind != "push" {
		f.broken = append(f.broken, fmt.Sprintf("%s %s after Close", e.kind, e.ref))
	}
	f.events = append(f.events, e)
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeAdapter) note(e event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(e)
}

func (f *fakeAdapter) Open(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(event{kind: "open"})
	if f.openErr != nil {
		return f.openErr
	}
	f.opened = true
	return nil
}

func (f *fakeAdapter) Receive(ctx context.Context, max int) ([]consume.Delivery, error) {
	for {
		f.mu.Lock()
		if !f.opened {
			f.broken = append(f.broken, "Receive before a successful Open")
		}
		if max < 1 || (f.maxAsk > 0 && max > f.maxAsk) {
			f.broken = append(f.broken, fmt.Sprintf("Receive asked for %d", max))
		}
		if len(f.queue) > 0 {
			b := f.queue[0]
			if len(b.ds) > max {
				f.queue[0].ds = b.ds[max:]
				b.ds = b.ds[:max:max]
				b.err = nil
			} else {
				f.queue = f.queue[1:]
			}
			f.asked = append(f.asked, max)
			for _, d := range b.ds {
				f.handedOut = append(f.handedOut, d.Ref)
				f.received[d.Ref] = time.Now()
			}
			f.record(event{kind: "receive", cause: b.err})
			f.mu.Unlock()
			return b.ds, b.err
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			f.note(event{kind: "receive-end"})
			return nil, ctx.Err()
		}
	}
}

func (f *fakeAdapter) Close(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		f.broken = append(f.broken, "Close called twice")
	}
	f.record(event{kind: "close"})
	f.closed = true
	return nil
}

// push queues one Receive call's worth of deliveries (and its error).
func (f *fakeAdapter) push(err error, ds ...consume.Delivery) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue = append(f.queue, batch{ds: ds, err: err})
	f.record(event{kind: "push"})
}

// snapshot returns the events so far.
func (f *fakeAdapter) snapshot() []event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]event(nil), f.events...)
}

// of returns the events of kind (and of ref when ref is not empty).
func (f *fakeAdapter) of(kind, ref string) []event {
	var out []event
	for _, e := range f.snapshot() {
		if e.kind == kind && (ref == "" || e.ref == ref) {
			out = append(out, e)
		}
	}
	return out
}

func (f *fakeAdapter) count(kind, ref string) int { return len(f.of(kind, ref)) }

// settleOf returns the one settling event of ref, failing the test when there is none.
func (f *fakeAdapter) settleOf(t *testing.T, ref string) event {
	t.Helper()
	for _, e := range f.snapshot() {
		if e.ref == ref && (e.kind == "ack" || e.kind == "nack" || e.kind == "reject") {
			return e
		}
	}
	t.Fatalf("%s was not settled: %v", ref, f.snapshot())
	return event{}
}

// waitFor waits until cond holds and fails the test after wait.
func (f *fakeAdapter) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !f.until(cond) {
		t.Fatalf("after %v, still waiting for %s; events %v", wait, what, f.snapshot())
	}
}

// until waits until cond holds, re-checking on every event and every few milliseconds (for
// what follows the last event, a counter); it reports false after wait. Handlers use it.
func (f *fakeAdapter) until(cond func() bool) bool {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		f.mu.Lock()
		changed := f.changed
		f.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
			return false
		}
	}
}

// index returns the position of ref's first event of kind, -1 when there is none.
func (f *fakeAdapter) index(kind, ref string) int {
	for i, e := range f.snapshot() {
		if e.kind == kind && e.ref == ref {
			return i
		}
	}
	return -1
}

// check fails the test with the contract violations seen, and when every delivery handed out
// was not settled exactly once. Call it after Stop.
func (f *fakeAdapter) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.broken {
		t.Errorf("adapter contract broken: %s", b)
	}
	for _, ref := range f.handedOut {
		if n := f.settled[ref]; n != 1 {
			t.Errorf("delivery %s settled %d times, want once", ref, n)
		}
	}
}

// settler records the settling of one delivery; the err fields make its calls fail.
type settler struct {
	f                          *fakeAdapter
	ref                        string
	ackErr, nackErr, rejectErr error
}

func (s *settler) settle(e event, err error) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	e.ref = s.ref
	s.f.settled[s.ref]++
	s.f.record(e)
	return err
}

func (s *settler) Ack(context.Context) error { return s.settle(event{kind: "ack"}, s.ackErr) }

func (s *settler) Nack(_ context.Context, delay time.Duration, cause error) error {
	return s.settle(event{kind: "nack", delay: delay, cause: cause}, s.nackErr)
}

func (s *settler) Reject(_ context.Context, cause error) error {
	return s.settle(event{kind: "reject", cause: cause}, s.rejectErr)
}

// extSettler is a settler whose broker hides deliveries for a while: it can be extended.
type extSettler struct {
	*settler
	extendErr error
}

func (s extSettler) Extend(context.Context) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.settled[s.ref] > 0 {
		s.f.broken = append(s.f.broken, "Extend of "+s.ref+" after it was settled")
	}
	s.f.record(event{kind: "extend", ref: s.ref})
	return s.extendErr
}

// delivery returns a well-formed delivery whose message ID and Ref are ref.
func (f *fakeAdapter) delivery(t *testing.T, ref string) consume.Delivery {
	t.Helper()
	body, err := backend.EncodeEnvelope(nil, &outbox.Message{
		ID: ref, Type: "test.event", Payload: json.RawMessage(`{"ref":"` + ref + `"}`), CreatedAt: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return consume.Delivery{Body: body, Ref: ref, Settler: &settler{f: f, ref: ref}}
}

// grouped returns f.delivery(ref) in group g.
func (f *fakeAdapter) grouped(t *testing.T, g, ref string) consume.Delivery {
	d := f.delivery(t, ref)
	d.Group = g
	return d
}

// start returns a started consumer of f. At cleanup it opens f's gates, stops it and checks
// f's contract.
func start(t *testing.T, f *fakeAdapter, cfg consume.Config) *consume.Consumer {
	t.Helper()
	c := newConsumer(t, f, cfg)
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	return c
}

// newConsumer returns a consumer of f, not started, stopped and checked at cleanup.
func newConsumer(t *testing.T, f *fakeAdapter, cfg consume.Config) *consume.Consumer {
	t.Helper()
	c, err := consume.New(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.openGates()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
		f.check(t)
	})
	return c
}

// counted waits until c's counters show n deliveries settled (each counter is updated after
// its settle call returns) and none in flight, and returns its stats.
func counted(t *testing.T, f *fakeAdapter, c *consume.Consumer, n int64) consume.Stats {
	t.Helper()
	var s consume.Stats
	f.waitFor(t, fmt.Sprintf("%d settlings counted", n), func() bool {
		s = c.Stats()
		return s.InFlight == 0 && s.Acked+s.AckErrors+s.Requeued+s.Rejected+s.SettleErrors == n
	})
	return s
}

// gate holds handlers until it is opened, by the test or at the latest at cleanup, before the
// consumer's Stop, which would wait for them, whatever order the two were made in.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func (f *fakeAdapter) newGate(t *testing.T) *gate {
	g := &gate{ch: make(chan struct{})}
	f.mu.Lock()
	f.gates = append(f.gates, g)
	f.mu.Unlock()
	t.Cleanup(g.open)
	return g
}

// openGates opens every gate of f, so that no handler holds a Stop.
func (f *fakeAdapter) openGates() {
	f.mu.Lock()
	gates := append([]*gate(nil), f.gates...)
	f.mu.Unlock()
	for _, g := range gates {
		g.open()
	}
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// signal closes ch once.
type signal struct {
	ch   chan struct{}
	once sync.Once
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (s *signal) fire() { s.once.Do(func() { close(s.ch) }) }

// await waits for ch, failing the test after wait.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatalf("after %v, still waiting for %s", wait, what)
	}
}

var errHandler = errors.New("handler failed")
