package consume_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
)

// groupHandler records, per group (the ID's first letter), the order of handler calls and
// whether two of one group ever ran at once; hold, when it names an ID, waits on g first.
type groupHandler struct {
	f       *fakeAdapter
	mu      sync.Mutex
	running map[byte]*atomic.Int64
	order   map[byte][]string
	overlap []string
}

func newGroupHandler(f *fakeAdapter, groups string) *groupHandler {
	h := &groupHandler{f: f, running: map[byte]*atomic.Int64{}, order: map[byte][]string{}}
	for i := range len(groups) {
		h.running[groups[i]] = new(atomic.Int64)
	}
	return h
}

func (h *groupHandler) handler(hold map[string]*gate, fail map[string]error) consume.Handler {
	return func(_ context.Context, m *outbox.Message) error {
		g := m.ID[0]
		if h.running[g].Add(1) != 1 {
			h.mu.Lock()
			h.overlap = append(h.overlap, m.ID)
			h.mu.Unlock()
		}
		defer h.running[g].Add(-1)
		h.mu.Lock()
		h.order[g] = append(h.order[g], m.ID)
		h.mu.Unlock()
		h.f.note(event{kind: "handle", ref: m.ID})
		if gt := hold[m.ID]; gt != nil {
			<-gt.ch
		}
		return fail[m.ID]
	}
}

func (h *groupHandler) check(t *testing.T, group byte, want ...string) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.overlap) > 0 {
		t.Errorf("ran while another of its group ran: %v", h.overlap)
	}
	if got := strings.Join(h.order[group], " "); got != strings.Join(want, " ") {
		t.Errorf("group %c handled in the order %q, want %q", group, got, strings.Join(want, " "))
	}
}

// The deliveries of one group are handled one at a time in the order received, a run of a
// later Receive call after the earlier run; another group runs meanwhile.
func TestGroupOrder(t *testing.T) {
	f := newFake()
	f.maxAsk = 2
	h := newGroupHandler(f, "ac")
	a0 := f.newGate(t)
	start(t, f, consume.Config{Concurrency: 4, ReceiveBatch: 2, Pollers: 1,
		Handler: h.handler(map[string]*gate{"a0": a0}, nil)})
	f.push(nil, f.grouped(t, "a", "a0"), f.grouped(t, "a", "a1"))
	f.push(nil, f.grouped(t, "a", "a2"), f.grouped(t, "c", "c0"))
	f.waitFor(t, "c0 acked while a0 is held", func() bool { return f.count("ack", "c0") == 1 })
	if n := f.count("handle", "a1") + f.count("handle", "a2"); n != 0 {
		t.Fatalf("a1 or a2 handled while a0 runs: %v", f.snapshot())
	}
	a0.open()
	f.waitFor(t, "a2 acked", func() bool { return f.count("ack", "a2") == 1 })
	h.check(t, 'a', "a0", "a1", "a2")
	if i, j, k := f.index("ack", "a0"), f.index("ack", "a1"), f.index("ack", "a2"); !(i < j && j < k) {
		t.Errorf("acks of a at %d, %d, %d, want in order", i, j, k)
	}
}

// The first delivery of a group that is not handled ends its run: the rest of the run and the
// later runs of the group already received are given back with Nack(0) in order, without
// being handled; a malformed delivery ends its run too. Other groups keep flowing.
func TestGroupFailureHoldsItsLaterDeliveries(t *testing.T) {
	f := newFake()
	f.maxAsk = 4
	h := newGroupHandler(f, "fgh")
	f0 := f.newGate(t)
	c := start(t, f, consume.Config{
		Concurrency: 8, ReceiveBatch: 4, Pollers: 1, Backoff: outbox.Backoff{Initial: 5 * time.Millisecond, Jitter: -1},
		Handler: h.handler(map[string]*gate{"f0": f0}, map[string]error{"f0": errHandler}),
	})
	bad := f.grouped(t, "h", "h0")
	bad.Body = []byte("not json")
	f.push(nil, f.grouped(t, "f", "f0"), f.grouped(t, "f", "f1"), f.grouped(t, "g", "g0"))
	f.push(nil, f.grouped(t, "f", "f2"), f.grouped(t, "g", "g1")) // g1 runs only once f2 waits behind f0's run
	f.push(nil, bad, f.grouped(t, "h", "h1"))
	f.waitFor(t, "g1 handled while f0 is held", func() bool { return f.count("ack", "g1") == 1 })
	f0.open()
	f.waitFor(t, "f2 and h1 settled", func() bool { return f.count("nack", "f2") == 1 && f.count("nack", "h1") == 1 })

	e0, e1, e2 := f.settleOf(t, "f0"), f.settleOf(t, "f1"), f.settleOf(t, "f2")
	if e0.kind != "nack" || e0.delay != 5*time.Millisecond || !errors.Is(e0.cause, errHandler) {
		t.Errorf("f0 settled by %s(%v, %v), want nack(5ms, the handler's error)", e0.kind, e0.delay, e0.cause)
	}
	if e1.kind != "nack" || e1.delay != 0 || !errors.Is(e1.cause, errHandler) {
		t.Errorf("f1 settled by %s(%v, %v), want nack(0, f0's error)", e1.kind, e1.delay, e1.cause)
	}
	if e2.kind != "nack" || e2.delay != 0 || e2.cause == nil {
		t.Errorf("f2 settled by %s(%v, %v), want nack(0, an earlier failure)", e2.kind, e2.delay, e2.cause)
	}
	if i, j, k := f.index("nack", "f0"), f.index("nack", "f1"), f.index("nack", "f2"); !(i < j && j < k) {
		t.Errorf("nacks of f at %d, %d, %d, want in order", i, j, k)
	}
	if e := f.settleOf(t, "h0"); e.kind != "reject" {
		t.Errorf("h0 settled by %s, want reject", e.kind)
	}
	if e := f.settleOf(t, "h1"); e.kind != "nack" || e.delay != 0 || e.cause == nil {
		t.Errorf("h1 settled by %s(%v, %v), want nack(0, the malformed h0)", e.kind, e.delay, e.cause)
	}
	h.check(t, 'f', "f0")
	h.check(t, 'g', "g0", "g1")
	h.check(t, 'h')
	if s := counted(t, f, c, 7); s.Failed != 1 || s.Requeued != 4 || s.Rejected != 1 || s.Handled != 2 || s.Acked != 2 {
		t.Errorf("stats %+v, want 1 failed, 4 requeued, 1 rejected, 2 handled and acked", s)
	}
}

// A stop that cancels a run's handler ends the run: the rest of it is given back as stopped
// (ErrStopped, which an adapter makes visible at once), like the cancelled delivery itself.
func TestStopEndsGroupRun(t *testing.T) {
	f := newFake()
	entered := newSignal()
	c := start(t, f, consume.Config{Concurrency: 4, ReceiveBatch: 2, Pollers: 1, StopGrace: time.Second,
		Handler: func(ctx context.Context, m *outbox.Message) error {
			f.note(event{kind: "handle", ref: m.ID})
			if m.ID != "s0" {
				return nil
			}
			entered.fire()
			<-ctx.Done()
			return ctx.Err()
		}})
	f.push(nil, f.grouped(t, "s", "s0"), f.grouped(t, "s", "s1"))
	f.push(nil, f.grouped(t, "s", "s2"), f.grouped(t, "x", "x0")) // x0 runs once s2 waits behind s0
	await(t, entered.ch, "s0's handler")
	f.waitFor(t, "x0 acked", func() bool { return f.count("ack", "x0") == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stop: %v, want the deadline's error", err)
	}
	for _, ref := range []string{"s0", "s1", "s2"} {
		if e := f.settleOf(t, ref); e.kind != "nack" || e.delay != 0 || !errors.Is(e.cause, consume.ErrStopped) {
			t.Errorf("%s settled by %s(%v, %v), want nack(0, ErrStopped)", ref, e.kind, e.delay, e.cause)
		}
	}
	if n := f.count("handle", "s1") + f.count("handle", "s2"); n != 0 {
		t.Errorf("s1 or s2 handled after s0 was stopped")
	}
}
