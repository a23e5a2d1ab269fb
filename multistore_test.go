package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

func newMulti(t testing.TB, outboxes map[string]outbox.Store) *outbox.MultiStore {
	t.Helper()
	ms, err := outbox.NewMultiStore(outboxes)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// claimLog records what each claim through it returned, by the order the claims started in.
type claimLog struct {
	outbox.Store
	mu     sync.Mutex
	n      int
	claims [][]string // IDs per claim, by start; nil for an empty one
}

func (c *claimLog) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	c.mu.Lock()
	i := c.n
	c.n++
	c.claims = append(c.claims, nil)
	c.mu.Unlock()
	msgs, err := c.Store.Claim(ctx, req)
	c.mu.Lock()
	c.claims[i] = outboxtest.IDs(msgs)
	c.mu.Unlock()
	return msgs, err
}

func (c *claimLog) Listen(ctx context.Context) (<-chan struct{}, error) {
	return c.Store.(outbox.Notifier).Listen(ctx)
}

// firstClaimWith returns the index (by start) of the first claim holding id, or -1.
func (c *claimLog) firstClaimWith(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ids := range c.claims {
		if slices.Contains(ids, id) {
			return i
		}
	}
	return -1
}

// Starvation: outbox "a" holds a backlog of 20k events (the issue speaks of 100k; 20k keeps the
// test fast and is 200 full claims, as many as the relay would make before reaching "b" if
// claims were not fair), outbox "b" one event on a key that "a" uses too. The assertion is on
// claim order, which does not depend on timing: "b"'s event is in the relay's first or second
// claim cycle, a cycle being one claim per worker (so the first claim with one worker, the
// first eight with four: claims in flight side by side may meet "b"'s key in "a" and hand it
// back, and the next claim starts with "b"). The time to its publish is logged beside the poll
// interval.
func TestMultiStoreNoStarvation(t *testing.T) {
	for _, tc := range []struct {
		ordered     bool
		concurrency int
	}{{true, 1}, {false, 1}, {true, 4}, {false, 4}} {
		t.Run(fmt.Sprintf("ordered=%v/concurrency=%d", tc.ordered, tc.concurrency), func(t *testing.T) {
			a, b := memstore.New(), memstore.New()
			write(t, a, 20_000, func(i int) string { return fmt.Sprint("k", i%50) })
			lone := write(t, b, 1, func(int) string { return "k1" })[0]
			log := &claimLog{Store: newMulti(t, map[string]outbox.Store{"a": a, "b": b})}
			tr := memory.New()
			published := make(chan time.Time, 1)
			unsubscribe := tr.Subscribe(func(_ context.Context, m *outbox.Message) error {
				if m.ID == lone.ID {
					select {
					case published <- time.Now():
					default:
					}
				}
				return nil
			})
			defer unsubscribe()
			const poll = 100 * time.Millisecond
			started := time.Now()
			startRelay(t, log, tr, outbox.Config{BatchSize: 100, Concurrency: tc.concurrency, PollInterval: poll, Unordered: !tc.ordered})
			select {
			case at := <-published:
				t.Logf("b's event published %v after the relay started (poll interval %v)", at.Sub(started), poll)
			case <-time.After(20 * time.Second):
				t.Fatal("b's event was not published")
			}
			if i := log.firstClaimWith(lone.ID); i < 0 || i >= 2*tc.concurrency {
				t.Fatalf("b's event came in claim %d, want one of the first %d (two cycles of %d workers)", i, 2*tc.concurrency, tc.concurrency)
			}
		})
	}
}

// Two outboxes hold a message with the same ID: each is settled in its own outbox, never in
// the other.
func TestMultiStoreSameIDSettlesInItsOutbox(t *testing.T) {
	ctx := context.Background()
	a, b := memstore.New(), memstore.New()
	a.KeepDelivered, b.KeepDelivered = true, true
	const id = "0190e0c8-0000-7000-8000-000000000001"
	for _, st := range []*memstore.Store{a, b} {
		m := outboxtest.NewMessages(1, "EVENT", "")[0]
		m.ID = id
		if err := st.Add(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	ms := newMulti(t, map[string]outbox.Store{"a": a, "b": b})
	req := outbox.ClaimRequest{Token: "t1", Limit: 10, Lease: time.Minute}
	first, err := ms.Claim(ctx, req)
	if err != nil || len(first) != 1 {
		t.Fatalf("claim: %d messages, %v; want the one of a (b's copy has the same ID: deferred)", len(first), err)
	}
	if n, err := ms.Ack(ctx, "t1", []string{id}); n != 1 || err != nil {
		t.Fatalf("ack: %d, %v", n, err)
	}
	counts := func(st *memstore.Store) outbox.Counts {
		c, err := st.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if ca, cb := counts(a), counts(b); ca.Delivered != 1 || cb.Delivered != 0 || cb.Pending != 1 {
		t.Fatalf("after the ack: a %+v, b %+v; want a's delivered and b's pending", ca, cb)
	}
	// The ack again, under the same token: nothing left to settle, in either outbox.
	if n, _ := ms.Ack(ctx, "t1", []string{id}); n != 0 {
		t.Fatalf("a second ack counted %d", n)
	}
	req.Token = "t2"
	second, err := ms.Claim(ctx, req)
	if err != nil || len(second) != 1 || second[0].ID != id {
		t.Fatalf("second claim: %v, %v; want b's copy", second, err)
	}
	if n, err := ms.Nack(ctx, "t2", []outbox.Failure{{ID: id, Error: "boom", Dead: true}}); n != 1 || err != nil {
		t.Fatalf("nack: %d, %v", n, err)
	}
	if ca, cb := counts(a), counts(b); ca.Delivered != 1 || ca.Dead != 0 || cb.Dead != 1 || cb.Pending != 0 {
		t.Fatalf("after the nack: a %+v, b %+v; want a's still delivered, b's dead", ca, cb)
	}
	// A token the composite did not hand out settles nothing.
	if n, err := ms.Ack(ctx, "unknown", []string{id}); n != 0 || err != nil {
		t.Fatalf("ack under an unknown token: %d, %v", n, err)
	}
	byName := map[string]outbox.OutboxStats{}
	for _, s := range ms.Stats() {
		byName[s.Name] = s
	}
	if byName["a"].Published != 1 || byName["a"].Dead != 0 || byName["b"].Dead != 1 || byName["b"].Deferred != 1 || byName["b"].Published != 0 {
		t.Fatalf("stats %+v", ms.Stats())
	}

	// Through a relay: both copies go out and each outbox ends with its own delivered.
	a2, b2 := memstore.New(), memstore.New()
	a2.KeepDelivered, b2.KeepDelivered = true, true
	for i := range 20 {
		for _, st := range []*memstore.Store{a2, b2} {
			m := outboxtest.NewMessages(1, "EVENT", "")[0]
			m.ID = fmt.Sprintf("0190e0c8-0000-7000-8000-%012d", i)
			if err := st.Add(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	tr := memory.New()
	startRelay(t, newMulti(t, map[string]outbox.Store{"a": a2, "b": b2}), tr, outbox.Config{BatchSize: 8})
	waitDelivered(t, tr, 40, 10*time.Second)
	for _, st := range []*memstore.Store{a2, b2} {
		if c := waitPendingZero(t, st); c.Delivered != 20 {
			t.Fatalf("counts %+v", c)
		}
	}
}

// Ordered mode over two outboxes that use the same keys, with a transport that fails publishes:
// each outbox's keys keep their order, and no claim holds a key from both outboxes (they are
// different keys: one's failure must not hold back the other's).
func TestMultiStoreOrderedSameKeys(t *testing.T) {
	a, b := memstore.New(), memstore.New()
	key := func(i int) string { return fmt.Sprint("aggregate-", i%20) }
	wa, wb := write(t, a, 2_000, key), write(t, b, 2_000, key)
	inA := map[string]bool{}
	for _, m := range wa {
		inA[m.ID] = true
	}
	ms := newMulti(t, map[string]outbox.Store{"a": a, "b": b})
	log := &claimLog{Store: ms}
	tr := memory.New()
	faulty := outboxtest.NewFaultyTransport(tr, 7)
	faulty.SetFailRate(0.1)
	faulty.SetPartialRate(0.2)
	startRelay(t, log, faulty, outbox.Config{BatchSize: 50, Concurrency: 4})
	waitDelivered(t, tr, len(wa)+len(wb), 60*time.Second)

	var ra, rb []*outbox.Message
	for _, m := range tr.Received() {
		if inA[m.ID] {
			ra = append(ra, m)
		} else {
			rb = append(rb, m)
		}
	}
	for name, c := range map[string]struct{ written, received []*outbox.Message }{"a": {wa, ra}, "b": {wb, rb}} {
		if r := outboxtest.CheckDelivery(t, c.written, c.received, outboxtest.DeliveryCheck{Ordered: true}); r.OrderViolations != 0 || r.Lost != 0 {
			t.Fatalf("outbox %s: %+v", name, r)
		}
	}
	keyOf := map[string]string{}
	for _, m := range append(slices.Clone(wa), wb...) {
		keyOf[m.ID] = m.Key
	}
	log.mu.Lock()
	for i, ids := range log.claims {
		owner := map[string]bool{} // key -> from a
		for _, id := range ids {
			if from, seen := owner[keyOf[id]]; seen && from != inA[id] {
				t.Fatalf("claim %d holds key %q from both outboxes", i, keyOf[id])
			}
			owner[keyOf[id]] = inA[id]
		}
	}
	log.mu.Unlock()
	var deferred int64
	for _, s := range ms.Stats() {
		deferred += s.Deferred
		if s.Failed == 0 {
			t.Errorf("outbox %s: no failed publish recorded: the faults were not exercised (%+v)", s.Name, s)
		}
	}
	if deferred == 0 {
		t.Error("no message was deferred: claims never met the same key in both outboxes, so the test did not exercise it")
	}
}

// A relay over 200 outboxes delivers every message of every one.
func TestMultiStoreManyOutboxes(t *testing.T) {
	stores := map[string]outbox.Store{}
	var mems []*memstore.Store
	var written []*outbox.Message
	perOutbox := map[string][]*outbox.Message{} // written, by outbox name
	outboxOf := map[string]string{}             // message ID -> outbox name
	for i := range 200 {
		st := memstore.New()
		name := fmt.Sprintf("tenant-%03d", i)
		// Every outbox uses the same three keys: they are different keys in each.
		w := write(t, st, 25, func(j int) string { return fmt.Sprint("k", j%3) })
		for _, m := range w {
			outboxOf[m.ID] = name
		}
		written = append(written, w...)
		perOutbox[name] = w
		stores[name] = st
		mems = append(mems, st)
	}
	ms := newMulti(t, stores)
	tr := memory.New()
	startRelay(t, ms, tr, outbox.Config{BatchSize: 100, Concurrency: 4})
	waitDelivered(t, tr, len(written), 60*time.Second)
	for _, st := range mems {
		waitPendingZero(t, st)
	}
	outboxtest.CheckDelivery(t, written, tr.Received(), outboxtest.DeliveryCheck{})
	received := map[string][]*outbox.Message{}
	for _, m := range tr.Received() {
		received[outboxOf[m.ID]] = append(received[outboxOf[m.ID]], m)
	}
	for name, w := range perOutbox {
		if r := outboxtest.CheckDelivery(t, w, received[name], outboxtest.DeliveryCheck{Ordered: true}); r.OrderViolations != 0 {
			t.Fatalf("outbox %s: %+v", name, r)
		}
	}
	stats := ms.Stats()
	if len(stats) != 200 {
		t.Fatalf("%d stats", len(stats))
	}
	var deferred, claimed int64
	for _, s := range stats {
		deferred += s.Deferred
		claimed += s.Claimed
	}
	t.Logf("claimed %d, deferred %d (a key or ID met in the same claim from another outbox)", claimed, deferred)
	for _, s := range stats {
		if s.Published != 25 {
			t.Fatalf("outbox %s: %+v", s.Name, s)
		}
	}
}

// notifying is a store whose Notifier fails the first times it is asked.
type notifying struct {
	*memstore.Store
	mu    sync.Mutex
	fails int
}

func (n *notifying) Listen(ctx context.Context) (<-chan struct{}, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fails > 0 {
		n.fails--
		return nil, errors.New("injected: cannot listen")
	}
	return n.Store.Listen(ctx)
}

// A commit in any outbox wakes the composite's listener, including one whose first Listen
// failed; the channel closes when ctx ends.
func TestMultiStoreListen(t *testing.T) {
	a, b := memstore.New(), &notifying{Store: memstore.New(), fails: 1}
	plain := struct{ outbox.Store }{memstore.New()} // not a Notifier: polled
	ms := newMulti(t, map[string]outbox.Store{"a": a, "b": b, "c": plain})
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := ms.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	drain := func() {
		for {
			select {
			case <-ch:
			default:
				return
			}
		}
	}
	for _, st := range []*memstore.Store{a, b.Store} {
		eventually(t, "a signal after a commit", func() bool {
			drain()
			if err := st.Add(ctx, outboxtest.NewMessages(1, "EVENT", "")...); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ch:
				return true
			case <-time.After(50 * time.Millisecond):
				return false
			}
		})
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ch:
		case <-deadline:
			t.Fatal("the channel was not closed after ctx ended")
		}
	}
	if _, err := newMulti(t, map[string]outbox.Store{"c": plain}).Listen(context.Background()); err == nil {
		t.Fatal("Listen over stores that cannot notify succeeded")
	}
}

// multiSchemaStore is a store whose CheckSchema returns err.
type multiSchemaStore struct {
	outbox.Store
	err error
}

func (s multiSchemaStore) CheckSchema(context.Context) error { return s.err }

func TestMultiStoreCheckSchemaNamesTheOutbox(t *testing.T) {
	ms := newMulti(t, map[string]outbox.Store{
		"good":    multiSchemaStore{memstore.New(), nil},
		"missing": multiSchemaStore{memstore.New(), fmt.Errorf("table gone: %w", outbox.ErrSchema)},
		"plain":   memstore.New(),
	})
	err := ms.CheckSchema(context.Background())
	if !errors.Is(err, outbox.ErrSchema) || err.Error() != `outbox "missing": table gone: `+outbox.ErrSchema.Error() {
		t.Fatalf("CheckSchema: %v", err)
	}
	if _, err := outbox.NewRelay(ms, memory.New(), outbox.Config{}); err != nil {
		t.Fatal(err)
	}
	r, _ := outbox.NewRelay(ms, memory.New(), outbox.Config{})
	if err := r.Start(context.Background()); !errors.Is(err, outbox.ErrSchema) {
		t.Fatalf("Start: %v", err)
	}
}

func TestMultiStoreRetentionAndConfig(t *testing.T) {
	ctx := context.Background()
	var stores []*memstore.Store
	outboxes := map[string]outbox.Store{}
	for i := range 3 {
		st := memstore.New()
		st.KeepDelivered = true
		write(t, st, 4, noKey)
		msgs, err := st.Claim(ctx, outbox.ClaimRequest{Token: "t", Limit: 10, Lease: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Ack(ctx, "t", outboxtest.IDs(msgs)); err != nil {
			t.Fatal(err)
		}
		stores = append(stores, st)
		outboxes[fmt.Sprint("o", i)] = st
	}
	ms := newMulti(t, outboxes)
	if n, err := ms.DeleteDelivered(ctx, 0, 5); n != 5 || err != nil {
		t.Fatalf("DeleteDelivered: %d, %v", n, err)
	}
	if n, err := ms.DeleteDelivered(ctx, 0, 5); n != 5 || err != nil {
		t.Fatalf("DeleteDelivered: %d, %v", n, err)
	}
	if n, err := ms.DeleteDelivered(ctx, 0, 5); n != 2 || err != nil {
		t.Fatalf("DeleteDelivered: %d, %v", n, err)
	}
	if st, ok := ms.Outbox("o1"); !ok || st != outbox.Store(stores[1]) {
		t.Fatal("Outbox(o1)")
	}
	if _, ok := ms.Outbox("nope"); ok {
		t.Fatal("Outbox(nope)")
	}
	for _, bad := range []map[string]outbox.Store{nil, {"": memstore.New()}, {"x": nil}} {
		var ce *outbox.ConfigError
		if _, err := outbox.NewMultiStore(bad); !errors.As(err, &ce) {
			t.Fatalf("NewMultiStore(%v): %v", bad, err)
		}
	}
}

// failingStore fails every claim.
type failingStore struct{ outbox.Store }

func (failingStore) Claim(context.Context, outbox.ClaimRequest) ([]*outbox.Message, error) {
	return nil, errors.New("injected: down")
}

// An outbox whose store fails does not hold up the others; the claim fails only when nothing
// was found.
func TestMultiStoreOutboxDown(t *testing.T) {
	ctx := context.Background()
	up := memstore.New()
	write(t, up, 3, noKey)
	ms := newMulti(t, map[string]outbox.Store{"down": failingStore{memstore.New()}, "up": up})
	req := outbox.ClaimRequest{Token: "t1", Limit: 10, Lease: time.Minute}
	if msgs, err := ms.Claim(ctx, req); len(msgs) != 3 || err != nil {
		t.Fatalf("claim: %d, %v", len(msgs), err)
	}
	req.Token = "t2"
	if _, err := ms.Claim(ctx, req); err == nil || err.Error() != `outbox "down": injected: down` {
		t.Fatalf("claim with nothing found: %v", err)
	}
	if s := ms.Stats(); s[0].ClaimErrors != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// BenchmarkMultiStoreDrain drains a 20k-event backlog in outbox "a" (ordered, 100 keys) two
// ways in every iteration, in alternating order so that a busy machine slows both alike: alone
// through its plain store, and beside outbox "b" (one event) through a MultiStore. It reports
// both rates and their ratio, multi/alone (the issue asks for ≥ 0.9), and the store calls made
// on "a" per event, multi/alone (claims of "a", counted: a figure the machine's load does not
// move).
func BenchmarkMultiStoreDrain(b *testing.B) {
	const backlog = 20_000
	var calls [2]int64 // claims of "a": alone, multi
	drain := func(multi bool) time.Duration {
		a, other := memstore.New(), memstore.New()
		fill(b, a, backlog, func(i int) string { return fmt.Sprint("k", i%100) })
		counted := &claimLog{Store: a}
		defer func() {
			counted.mu.Lock()
			defer counted.mu.Unlock()
			if multi {
				calls[1] += int64(counted.n)
			} else {
				calls[0] += int64(counted.n)
			}
		}()
		var st outbox.Store = counted
		want := backlog
		if multi {
			fill(b, other, 1, noKey)
			st = newMulti(b, map[string]outbox.Store{"a": counted, "b": other})
			want++
		}
		tr := memory.New()
		r, err := outbox.NewRelay(st, tr, fast(outbox.Config{BatchSize: 500, Concurrency: 4}))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := r.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = tr.WaitFor(ctx, want)
		cancel()
		took := time.Since(start)
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if stopErr := r.Stop(ctx); err == nil {
			err = stopErr
		}
		if err != nil {
			b.Fatal(err)
		}
		return took
	}
	var alone, multi time.Duration
	for i := range b.N {
		if i%2 == 0 {
			alone += drain(false)
			multi += drain(true)
		} else {
			multi += drain(true)
			alone += drain(false)
		}
	}
	b.ReportMetric(float64(backlog*b.N)/alone.Seconds(), "alone-events/s")
	b.ReportMetric(float64(backlog*b.N)/multi.Seconds(), "multi-events/s")
	b.ReportMetric(alone.Seconds()/multi.Seconds(), "multi/alone")
	b.ReportMetric(float64(calls[1])/float64(calls[0]), "a-claims-multi/alone")
}

// fill writes n messages to st, as write does, for benchmarks.
func fill(tb testing.TB, st *memstore.Store, n int, key func(i int) string) {
	tb.Helper()
	for i := 0; i < n; i += 500 {
		var msgs []*outbox.Message
		for j := i; j < min(i+500, n); j++ {
			msgs = append(msgs, outboxtest.NewMessages(1, "EVENT", key(j))[0])
		}
		if err := st.Add(context.Background(), msgs...); err != nil {
			tb.Fatal(err)
		}
	}
}

// ackFailsOnce is a store whose first Ack fails after doing nothing.
type ackFailsOnce struct {
	*memstore.Store
	failed bool
}

func (s *ackFailsOnce) Ack(ctx context.Context, token string, ids []string) (int, error) {
	if !s.failed {
		s.failed = true
		return 0, errors.New("injected: ack failed")
	}
	return s.Store.Ack(ctx, token, ids)
}

// An ack that fails in one outbox after succeeding in another fails as a whole; its retry
// reports every message settled, those of the first call included, so the relay does not
// count the ones settled the first time as stale.
func TestMultiStorePartlyFailedAck(t *testing.T) {
	ctx := context.Background()
	a, b := memstore.New(), &ackFailsOnce{Store: memstore.New()}
	write(t, a, 2, noKey)
	write(t, b.Store, 3, noKey)
	ms := newMulti(t, map[string]outbox.Store{"a": a, "b": b})
	msgs, err := ms.Claim(ctx, outbox.ClaimRequest{Token: "t", Limit: 10, Lease: time.Minute})
	if err != nil || len(msgs) != 5 {
		t.Fatalf("claim: %d, %v", len(msgs), err)
	}
	ids := outboxtest.IDs(msgs)
	if n, err := ms.Ack(ctx, "t", ids); err == nil {
		t.Fatalf("ack with b failing: %d, nil error", n)
	}
	if n, err := ms.Ack(ctx, "t", ids); n != 5 || err != nil {
		t.Fatalf("retried ack: %d, %v; want 5", n, err)
	}
	if n, err := ms.Ack(ctx, "t", ids); n != 0 || err != nil {
		t.Fatalf("third ack: %d, %v; want 0", n, err)
	}

	// Through a relay: nothing stale, nothing left.
	a2, b2 := memstore.New(), &ackFailsOnce{Store: memstore.New()}
	write(t, a2, 50, noKey)
	write(t, b2.Store, 50, noKey)
	tr := memory.New()
	r := startRelay(t, newMulti(t, map[string]outbox.Store{"a": a2, "b": b2}), tr, outbox.Config{BatchSize: 100, Concurrency: 1})
	eventually(t, "100 published", func() bool { return r.Stats().Published == 100 })
	if s := r.Stats(); s.Stale != 0 {
		t.Fatalf("relay stats %+v", s)
	}
}
