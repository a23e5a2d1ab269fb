package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/transport/kafka"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// newConsumer builds a consumer of topics in a group of its own (unless cfg names one) on the
// shared cluster; it is stopped at cleanup.
func newConsumer(t *testing.T, c *cluster, cfg kafka.ConsumerConfig, handle func(context.Context, *outbox.Message) error) *kafka.Consumer {
	t.Helper()
	if cfg.Brokers == nil {
		cfg.Brokers = c.brokers
	}
	if cfg.Group == "" {
		cfg.Group = topicName(t) + "-group"
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = 20 * time.Millisecond
	}
	if cfg.FetchMaxWait == 0 {
		cfg.FetchMaxWait = 100 * time.Millisecond
	}
	cfg.Handler = handle
	cons, err := kafka.NewConsumer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewConsumer(%v): %v", cfg, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := cons.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	if err := cons.Start(testCtx(t)); err != nil {
		t.Fatalf("start: %v", err)
	}
	return cons
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// committed returns the offset group committed for partition 0 of topic, or -1 when none.
func (c *cluster) committed(t *testing.T, group, topic string) int64 {
	t.Helper()
	offs, err := c.admin.FetchOffsets(testCtx(t), group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return -1 // the group has not joined yet
	}
	if err != nil {
		t.Fatalf("fetch offsets of %s: %v", group, err)
	}
	o, ok := offs.Lookup(topic, 0)
	if !ok {
		return -1
	}
	if o.Err != nil {
		t.Fatalf("offset of %s/%s: %v", group, topic, o.Err)
	}
	return o.At
}

// assigned returns how many partitions the group's members are assigned, one count per member.
func (c *cluster) assigned(t *testing.T, group string) []int {
	t.Helper()
	gs, err := c.admin.DescribeGroups(testCtx(t), group)
	if err != nil {
		t.Fatalf("describe group %s: %v", group, err)
	}
	var counts []int
	for _, m := range gs[group].Members {
		a, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		n := 0
		for _, tp := range a.Topics {
			n += len(tp.Partitions)
		}
		counts = append(counts, n)
	}
	return counts
}

// recorder keeps what a handler saw, in order.
type recorder struct {
	mu   sync.Mutex
	seen []*outbox.Message
	ids  map[string]int
}

func newRecorder() *recorder { return &recorder{ids: map[string]int{}} }

func (r *recorder) add(m *outbox.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, m)
	r.ids[m.ID]++
}

func (r *recorder) distinct() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.ids) }

func (r *recorder) messages() []*outbox.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// checkConsumedKeyOrder checks that, per key, the first sightings of in's messages follow in's
// order.
func checkConsumedKeyOrder(t *testing.T, in, seen []*outbox.Message) {
	t.Helper()
	pos := map[string]int{}
	for i, m := range in {
		pos[m.ID] = i
	}
	last := map[string]int{}
	first := map[string]bool{}
	for _, m := range seen {
		if first[m.ID] {
			continue
		}
		first[m.ID] = true
		if p, ok := last[m.Key]; ok && pos[m.ID] < p {
			t.Fatalf("key %s: message %d handled after message %d", m.Key, pos[m.ID], p)
		}
		last[m.Key] = pos[m.ID]
	}
}

func TestConsumerRoundTrip(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw=%t", raw), func(t *testing.T) {
			c := needCluster(t)
			topic := c.createTopic(t, 3, nil)
			tr := c.newTransport(t, kafka.Config{Topic: topic, RawPayload: raw})
			var in []*outbox.Message
			for i := range 60 {
				m := &outbox.Message{Type: "T", Key: fmt.Sprintf("k%d", i%7), Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
					Headers: map[string]string{"traceparent": "00-abc-01", "empty": ""}}
				if i%10 == 9 {
					m.Key = "" // unkeyed records spread over the partitions
				}
				in = append(in, m)
			}
			prepared(t, in...)
			if err := tr.Publish(testCtx(t), in); err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			cons := newConsumer(t, c, kafka.ConsumerConfig{Topics: []string{topic}, RawPayload: raw}, func(_ context.Context, m *outbox.Message) error {
				rec.add(m)
				return nil
			})
			waitFor(t, 15*time.Second, "every message", func() bool { return rec.distinct() == len(in) })
			seen := rec.messages()
			byID := map[string]*outbox.Message{}
			for _, m := range seen {
				byID[m.ID] = m
			}
			for _, want := range in {
				got := byID[want.ID]
				if got == nil {
					t.Fatalf("message %s not received", want.ID)
				}
				if got.Type != want.Type || got.Key != want.Key || string(got.Payload) != string(want.Payload) ||
					got.Headers["traceparent"] != "00-abc-01" || len(got.Headers) != 2 {
					t.Errorf("received %+v, want %+v", got, want)
				}
				if !raw && !got.CreatedAt.Equal(want.CreatedAt) {
					t.Errorf("CreatedAt %v, want %v", got.CreatedAt, want.CreatedAt)
				}
			}
			checkConsumedKeyOrder(t, in, seen)
			// The handler saw every message; the counters follow once each handler has returned.
			waitFor(t, 10*time.Second, "every handler to return and its offset recorded", func() bool {
				return cons.Stats().Acked >= int64(len(in))
			})
			if s := cons.Stats(); s.Handled < int64(len(in)) || s.Failed != 0 || s.Malformed != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// A failing handler rewinds its partition: the failed record comes again, and the later
// records of the partition wait for it.
func TestConsumerHandlerErrorRedelivers(t *testing.T) {
	for _, mode := range []string{"error", "panic"} {
		t.Run(mode, func(t *testing.T) {
			c := needCluster(t)
			topic := c.createTopic(t, 1, nil)
			tr := c.newTransport(t, kafka.Config{Topic: topic})
			in := prepared(t, messages(5, "T", "k")...)
			if err := tr.Publish(testCtx(t), in); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var order []int
			fails := 2
			index := map[string]int{}
			for i, m := range in {
				index[m.ID] = i
			}
			group := topicName(t) + "-group"
			obs, logs := observer.New(zapcore.InfoLevel)
			cons := newConsumer(t, c, kafka.ConsumerConfig{Topics: []string{topic}, Group: group, Logger: zap.New(obs)}, func(_ context.Context, m *outbox.Message) error {
				mu.Lock()
				defer mu.Unlock()
				i := index[m.ID]
				order = append(order, i)
				if i == 2 && fails > 0 {
					fails--
					if mode == "panic" {
						panic("handler bug")
					}
					return errors.New("not yet")
				}
				return nil
			})
			waitFor(t, 15*time.Second, "every message committed", func() bool { return c.committed(t, group, topic) == 5 })
			mu.Lock()
			got := slices.Clone(order)
			mu.Unlock()
			if want := []int{0, 1, 2, 2, 2, 3, 4}; !slices.Equal(got, want) {
				t.Errorf("handled %v, want %v (the later records wait for the failed one)", got, want)
			}
			if s := cons.Stats(); s.Failed != 2 || s.Handled != 5 || s.Requeued < 2 || s.Acked != 5 {
				t.Errorf("stats %+v", s)
			}
			failed := logs.FilterMessageSnippet("handler failed").All()
			if len(failed) != 2 || failed[0].ContextMap()["id"] != in[2].ID || failed[0].ContextMap()["ref"] != topic+"/0@2" {
				t.Errorf("handler failure logs %+v, want two naming message %s at %s/0@2", failed, in[2].ID, topic)
			}
			if n := logs.FilterMessageSnippet("partition rewound to its failed record").Len(); n != 2 {
				t.Errorf("%d rewind logs, want 2", n)
			}
		})
	}
}

// Two members of one group share the partitions; each key stays in order.
func TestConsumerConcurrentMembers(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 4, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	group := topicName(t) + "-group"
	recs := []*recorder{newRecorder(), newRecorder()}
	for _, r := range recs {
		newConsumer(t, c, kafka.ConsumerConfig{Topics: []string{topic}, Group: group, Concurrency: 2},
			func(_ context.Context, m *outbox.Message) error {
				r.add(m)
				return nil
			})
	}
	waitFor(t, 20*time.Second, "both members assigned", func() bool {
		n := c.assigned(t, group)
		return len(n) == 2 && n[0] > 0 && n[1] > 0 && n[0]+n[1] == 4
	})
	var in []*outbox.Message
	for i := range 200 {
		in = append(in, &outbox.Message{Type: "T", Key: fmt.Sprintf("k%d", i%20), Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
	}
	prepared(t, in...)
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatal(err)
	}
	all := func() int {
		ids := map[string]bool{}
		for _, r := range recs {
			for _, m := range r.messages() {
				ids[m.ID] = true
			}
		}
		return len(ids)
	}
	waitFor(t, 15*time.Second, "every message", func() bool { return all() == len(in) })
	for i, r := range recs {
		if r.distinct() == 0 {
			t.Errorf("member %d handled nothing", i)
		}
		checkConsumedKeyOrder(t, in, r.messages())
	}
}

// Stop waits for the handler in flight and commits what it handled.
func TestConsumerStopWaitsForHandler(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 1, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "k")...)); err != nil {
		t.Fatal(err)
	}
	group := topicName(t) + "-group"
	entered, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	cons := newConsumer(t, c, kafka.ConsumerConfig{Topics: []string{topic}, Group: group}, func(ctx context.Context, _ *outbox.Message) error {
		close(entered)
		<-release
		finished.Store(true)
		return ctx.Err()
	})
	<-entered
	// Whether the handler had finished is read the moment Stop returns.
	type result struct {
		err      error
		finished bool
	}
	stopped := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := cons.Stop(ctx)
		stopped <- result{err, finished.Load()}
	}()
	close(release)
	res := <-stopped
	if res.err != nil {
		t.Fatalf("stop: %v", res.err)
	}
	if !res.finished {
		t.Fatal("Stop returned before the handler in flight")
	}
	if got := c.committed(t, group, topic); got != 1 {
		t.Errorf("committed offset %d after a graceful stop, want 1", got)
	}
}

func TestConsumerStartsOnce(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 1, nil)
	cons := newConsumer(t, c, kafka.ConsumerConfig{Topics: []string{topic}}, func(context.Context, *outbox.Message) error { return nil })
	if err := cons.Start(testCtx(t)); !errors.Is(err, outbox.ErrConsumerStarted) {
		t.Errorf("second start = %v, want ErrConsumerStarted", err)
	}
}

// Records that cannot be decoded are skipped (and counted); the next one is handled.
func TestConsumerSkipsMalformed(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 1, nil)
	env, err := backend.EncodeEnvelope(nil, prepared(t, messages(1, "T", "")...)[0])
	if err != nil {
		t.Fatal(err)
	}
	produceRaw(t, c, topic,
		&kgo.Record{Value: []byte("not json")},
		&kgo.Record{Key: []byte("x"), Value: env, Headers: []kgo.RecordHeader{{Key: kafka.HeaderKey, Value: []byte("y")}}},
	)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	in := prepared(t, messages(1, "T", "k")...)
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cons := newConsumer(t, c, kafka.ConsumerConfig{Topics: []string{topic}}, func(_ context.Context, m *outbox.Message) error {
		rec.add(m)
		return nil
	})
	waitFor(t, 15*time.Second, "the valid message", func() bool { return rec.distinct() == 1 })
	// The malformed records may sit in other partitions than the valid one: wait for their count.
	waitFor(t, 15*time.Second, "both malformed records counted", func() bool { return cons.Stats().Malformed >= 2 })
	if s := cons.Stats(); s.Malformed != 2 || s.Rejected != 2 {
		t.Errorf("stats %+v, want two malformed, rejected", s)
	}
}

// While one partition's record keeps failing, the later records of that partition wait and
// the other partitions go on; once the record is accepted, the waiting ones follow in order.
func TestConsumerFailureHoldsOnlyItsPartition(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 2, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	stuck, free := "a", "b"
	for partitionOf(free, 2) == partitionOf(stuck, 2) {
		free += "b"
	}
	held := prepared(t, messages(4, "T", stuck)...)
	other := prepared(t, messages(4, "T", free)...)
	if err := tr.Publish(testCtx(t), append(slices.Clone(held), other...)); err != nil {
		t.Fatal(err)
	}
	var accept atomic.Bool
	rec := newRecorder()
	cons := newConsumer(t, c, kafka.ConsumerConfig{Topics: []string{topic}}, func(_ context.Context, m *outbox.Message) error {
		if m.ID == held[0].ID && !accept.Load() {
			return errors.New("not yet")
		}
		rec.add(m)
		return nil
	})
	waitFor(t, 15*time.Second, "the free partition handled, the stuck one failing again", func() bool {
		return rec.distinct() == len(other) && cons.Stats().Failed >= 3
	})
	for _, m := range rec.messages() {
		if m.Key == stuck {
			t.Fatalf("message %s of the stuck partition handled before the failed one", m.ID)
		}
	}
	accept.Store(true)
	waitFor(t, 15*time.Second, "the stuck partition", func() bool { return rec.distinct() == len(held)+len(other) })
	var got []string
	for _, m := range rec.messages() {
		if m.Key == stuck {
			got = append(got, m.ID)
		}
	}
	var want []string
	for _, m := range held {
		want = append(want, m.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("stuck partition handled %v, want %v", got, want)
	}
}

// Run consumes until its context ends, then stops cleanly, having committed what it handled.
func TestConsumerRun(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 1, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	if err := tr.Publish(testCtx(t), prepared(t, messages(3, "T", "k")...)); err != nil {
		t.Fatal(err)
	}
	group := topicName(t) + "-group"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handled atomic.Int64
	cons, err := kafka.NewConsumer(context.Background(), kafka.ConsumerConfig{
		Connection: kafka.Connection{Brokers: c.brokers}, Topics: []string{topic}, Group: group, FetchMaxWait: 100 * time.Millisecond,
		Handler: func(context.Context, *outbox.Message) error {
			if handled.Add(1) == 3 {
				cancel()
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cons.Run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := c.committed(t, group, topic); got != 3 {
		t.Errorf("committed offset %d after Run, want 3", got)
	}
}

// With RawPayload, a record without the outbox.id header cannot be deduplicated: it is
// malformed.
func TestConsumerRawNeedsID(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 1, nil)
	produceRaw(t, c, topic, &kgo.Record{Value: []byte(`{"a":1}`), Headers: []kgo.RecordHeader{{Key: kafka.HeaderType, Value: []byte("T")}}})
	tr := c.newTransport(t, kafka.Config{Topic: topic, RawPayload: true})
	in := prepared(t, messages(1, "T", "k")...)
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cons := newConsumer(t, c, kafka.ConsumerConfig{Topics: []string{topic}, RawPayload: true}, func(_ context.Context, m *outbox.Message) error {
		rec.add(m)
		return nil
	})
	waitFor(t, 15*time.Second, "the valid message", func() bool { return rec.distinct() == 1 })
	if got := rec.messages()[0]; got.ID != in[0].ID || got.Type != "T" || got.Key != "k" {
		t.Errorf("received %+v", got)
	}
	waitFor(t, 15*time.Second, "the malformed record counted", func() bool { return cons.Stats().Malformed >= 1 })
	if s := cons.Stats(); s.Malformed != 1 {
		t.Errorf("stats %+v, want one malformed", s)
	}
}

// At most Concurrency partitions are handled at once, however many a poll returns.
func TestConsumerConcurrencyBoundsPartitions(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 4, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	var keys []string
	taken := map[int32]bool{}
	for i := 0; len(keys) < 4; i++ {
		k := fmt.Sprintf("k%d", i)
		if p := partitionOf(k, 4); !taken[p] {
			taken[p] = true
			keys = append(keys, k)
		}
	}
	var in []*outbox.Message
	for _, k := range keys {
		in = append(in, messages(5, "T", k)...)
	}
	if err := tr.Publish(testCtx(t), prepared(t, in...)); err != nil {
		t.Fatal(err)
	}
	var running, most, handled atomic.Int64
	newConsumer(t, c, kafka.ConsumerConfig{Topics: []string{topic}, Concurrency: 2}, func(context.Context, *outbox.Message) error {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(20 * time.Millisecond) // a handler that takes a while, so that others overlap it
		running.Add(-1)
		handled.Add(1)
		return nil
	})
	waitFor(t, 15*time.Second, "every record", func() bool { return handled.Load() == int64(len(in)) })
	if m := most.Load(); m > 2 {
		t.Errorf("%d handlers ran at once, want at most Concurrency (2)", m)
	}
}
