package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/kafka"
)

// These tests inject broker faults with kfake: a produce answer with an error code for one
// topic or partition, in place of the write (or, for NOT_ENOUGH_REPLICAS_AFTER_APPEND, after
// it, as a real broker does).

// faults is why the tests below skip on a real cluster.
const faults = "injects broker faults"

// producesTo matches produce requests that carry topic, by name or, from produce v13 on, by
// topic ID. It is called on the cluster's goroutine, so it looks the ID up beforehand.
func (c *cluster) producesTo(topic string) func(kmsg.Request) bool {
	id := c.fake.TopicInfo(topic).TopicID
	return func(r kmsg.Request) bool {
		req, ok := r.(*kmsg.ProduceRequest)
		if !ok {
			return false
		}
		for _, t := range req.Topics {
			if t.Topic == topic || t.TopicID == id {
				return true
			}
		}
		return false
	}
}

// nthProduceTo matches produce requests to topic from the nth on (1-based). kfake may ask
// about one request more than once (for the topic, then for each partition), so requests are
// told apart by identity.
func (c *cluster) nthProduceTo(topic string, n int) func(kmsg.Request) bool {
	var mu sync.Mutex
	seen := 0
	var last kmsg.Request
	match := c.producesTo(topic)
	return func(r kmsg.Request) bool {
		if !match(r) {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if r != last {
			last = r
			seen++
		}
		return seen >= n
	}
}

// keysOn returns one key for each of n partitions, each hashing to its partition.
func keysOn(n int) []string {
	keys := make([]string, n)
	found := 0
	for i := 0; found < n; i++ {
		k := fmt.Sprintf("key-%d", i)
		if p := partitionOf(k, n); keys[p] == "" {
			keys[p] = k
			found++
		}
	}
	return keys
}

// A partition whose batch the broker refuses: its messages fail, retryably (the broker does
// not say which record of the batch is at fault), the other partitions' are published. A
// refused batch of one record is that record's fault: permanent.
func TestPartialProduceFailures(t *testing.T) {
	c := needFake(t, faults)
	topic := c.createTopic(t, 3, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	keys := keysOn(3)
	const bad = 1
	var in []*outbox.Message
	for i := range 5 {
		for _, k := range keys {
			m := messages(1, "T", k)[0]
			m.Payload = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
			in = append(in, m)
		}
	}
	prepared(t, in...)
	c.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Partitions: []int32{bad}, Err: kerr.InvalidRecord})

	be := batchErr(t, tr.Publish(testCtx(t), in))
	var published []*outbox.Message
	for _, m := range in {
		err := be.Failed[m.ID]
		if m.Key != keys[bad] {
			if err != nil {
				t.Errorf("message of key %s on a healthy partition failed: %v", m.Key, err)
			}
			published = append(published, m)
			continue
		}
		if err == nil || outbox.IsPermanent(err) || outbox.IsUnavailable(err) || !errors.Is(err, kerr.InvalidRecord) ||
			!strings.Contains(err.Error(), "does not say which record") {
			t.Errorf("message of the refused partition: %v, want a retryable failure naming the refusal", err)
		}
	}
	checkKeyOrder(t, published, c.consumeExactly(t, len(published), false, topic))

	lone := prepared(t, messages(1, "T", keys[bad])...)
	c.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Partitions: []int32{bad}, Err: kerr.MessageTooLarge})
	be = batchErr(t, tr.Publish(testCtx(t), lone))
	if err := be.Failed[lone[0].ID]; !outbox.IsPermanent(err) || !errors.Is(err, kerr.MessageTooLarge) {
		t.Errorf("a lone record the broker finds too large: %v, want permanent", err)
	}
}

// One key's records span several batches, sent one after the other. The broker refuses the
// third (and, for the outage, every later one): the records of the first two are published, and no record after the first refused one
// is, although later batches would have been accepted. The published ones are a prefix of the
// key's messages, and every other one is reported failed.
func TestKeyStopsAtFirstFailure(t *testing.T) {
	c := needFake(t, faults)
	for _, fault := range []struct {
		name        string
		err         *kerr.Error
		count       int
		unavailable bool
	}{
		{"refused", kerr.InvalidRecord, 1, false},
		{"outage", kerr.NotEnoughReplicas, -1, true},
	} {
		t.Run(fault.name, func(t *testing.T) {
			topic := c.createTopic(t, 1, nil)
			// About three records per batch.
			tr := c.newTransport(t, kafka.Config{Topic: topic, MaxMessageBytes: 4096, DeliveryTimeout: time.Second})
			in := messages(20, "T", "k")
			for i, m := range in {
				m.Payload = json.RawMessage(fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", 1000)))
			}
			prepared(t, in...)
			h := c.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: fault.err, Count: fault.count, When: c.nthProduceTo(topic, 3)})
			defer h.Remove()

			err := tr.Publish(testCtx(t), in)
			be := batchErr(t, err)
			first := slices.IndexFunc(in, func(m *outbox.Message) bool { return be.Failed[m.ID] != nil })
			if first <= 0 || first >= len(in)-1 {
				t.Fatalf("first failure at %d of %d, want one after the first batch and before the last: %v", first, len(in), be)
			}
			for _, m := range in[first:] {
				if be.Failed[m.ID] == nil {
					t.Fatalf("message %s after the first failure was reported published", m.ID)
				}
			}
			if len(be.Failed) != len(in)-first {
				t.Fatalf("%d failures, want the %d from the first on", len(be.Failed), len(in)-first)
			}
			if outbox.IsUnavailable(err) != fault.unavailable {
				t.Errorf("IsUnavailable = %t, want %t: %v", outbox.IsUnavailable(err), fault.unavailable, err)
			}
			got := c.consumeExactly(t, first, false, topic)
			checkKeyOrder(t, in[:first], got)
		})
	}
}

// A key's records bound for two topics (routed by Type): once one fails on the first topic,
// none after it is published on either.
func TestKeyStopsAcrossTopics(t *testing.T) {
	c := needFake(t, faults)
	a, b := c.createTopic(t, 1, nil), c.createTopic(t, 1, nil)
	tr := c.newTransport(t, kafka.Config{Routes: map[string]string{"A": a, "B": b}})
	var in []*outbox.Message
	for i := range 6 {
		typ := "A"
		if i%2 == 1 {
			typ = "B"
		}
		in = append(in, messages(1, typ, "k")...)
	}
	other := messages(3, "B", "j")
	in = append(in, other...)
	prepared(t, in...)
	h := c.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: a, Err: kerr.InvalidRecord, Count: -1, When: c.nthProduceTo(a, 2)})
	defer h.Remove()

	be := batchErr(t, tr.Publish(testCtx(t), in))
	// k: A (published), B (published), A (refused), then everything after held back.
	for i, m := range in[:6] {
		if failed := be.Failed[m.ID] != nil; failed != (i >= 2) {
			t.Errorf("message %d of key k: failed=%t (%v)", i, failed, be.Failed[m.ID])
		}
	}
	for _, m := range other {
		if err := be.Failed[m.ID]; err != nil {
			t.Errorf("key j failed: %v", err)
		}
	}
	if got := c.consumeExactly(t, 1, false, a); got[0].Msg.ID != in[0].ID {
		t.Errorf("topic A holds %s, want %s", got[0].Msg.ID, in[0].ID)
	}
	gotB := c.consumeExactly(t, 4, false, b)
	checkKeyOrder(t, append([]*outbox.Message{in[1]}, other...), gotB)
}

// The broker writes a batch but answers NOT_ENOUGH_REPLICAS_AFTER_APPEND: the producer resends
// it with the same sequence numbers, the broker recognises it, and the topic holds each record
// once.
func TestIdempotentResend(t *testing.T) {
	c := needFake(t, faults)
	topic := c.createTopic(t, 1, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	in := prepared(t, messages(10, "T", "k")...)
	h := c.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.NotEnoughReplicasAfterAppend})
	defer h.Remove()
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatal(err)
	}
	if h.Hits() != 1 {
		t.Fatalf("the fault answered %d produce requests, want 1", h.Hits())
	}
	checkKeyOrder(t, in, c.consumeExactly(t, len(in), false, topic))
}

// Refused permissions and an invalid topic answered by the broker.
func TestBrokerRefusals(t *testing.T) {
	c := needFake(t, faults)
	for _, tc := range []struct {
		err         *kerr.Error
		permanent   bool
		unavailable bool
	}{
		{kerr.TopicAuthorizationFailed, false, true},
		{kerr.InvalidTopicException, true, false},
		{kerr.NotEnoughReplicas, false, true},
		{kerr.UnknownServerError, false, false},
	} {
		t.Run(tc.err.Message, func(t *testing.T) {
			topic := c.createTopic(t, 1, nil)
			tr := c.newTransport(t, kafka.Config{Topic: topic, DeliveryTimeout: time.Second})
			h := c.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: tc.err, Count: -1})
			defer h.Remove()
			err := tr.Publish(testCtx(t), prepared(t, messages(3, "T", "")...))
			if err == nil {
				t.Fatal("publish succeeded")
			}
			if outbox.IsPermanent(err) != tc.permanent || outbox.IsUnavailable(err) != tc.unavailable {
				t.Errorf("permanent=%t unavailable=%t, want %t %t: %v", outbox.IsPermanent(err), outbox.IsUnavailable(err), tc.permanent, tc.unavailable, err)
			}
		})
	}
}

// A publish whose context ends while the broker sits on the produce request returns at once,
// reporting the records as failed with an unknown outcome (retryable, not an outage). Once the
// broker answers, publishing goes on.
func TestContextEndsWhileBrokerSitsOnRequest(t *testing.T) {
	c := needFake(t, faults)
	topic := c.createTopic(t, 1, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	match := c.producesTo(topic)
	c.fake.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		if match(r) {
			c.fake.SleepControl(func() { <-release }) // then answer as usual, once
			c.fake.DropControl()
		}
		return nil, nil, false
	})

	in := prepared(t, messages(4, "T", "k")...)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := tr.Publish(ctx, in)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("publish took %v with a 300ms context", took)
	}
	be := batchErr(t, err)
	if len(be.Failed) != len(in) || outbox.IsUnavailable(err) || outbox.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "may still be written") {
		t.Fatalf("publish = %v, want every message failed with an unknown outcome", err)
	}

	// Once the broker answers, it writes the first call's records after all.
	free()
	if _, err := c.consume(testCtx(t), len(in), false, topic); err != nil {
		t.Fatal(err)
	}
	next := prepared(t, messages(2, "T", "k")...)
	if err := tr.Publish(testCtx(t), next); err != nil {
		t.Fatal(err)
	}
	checkKeyOrder(t, append(in, next...), c.consumeExactly(t, len(in)+len(next), false, topic))
}

// Concurrent publishes share flushes and batches while the broker refuses every third produce
// request to the topic. For every call and key, the messages reported published are a prefix
// of the key's messages in the call, and the topic holds exactly the messages reported
// published, once each, each key in order.
func TestConcurrentPublishesUnderFaults(t *testing.T) {
	c := needFake(t, faults)
	topic := c.createTopic(t, 3, nil)
	// Small flushes, so that calls span several of them and share them.
	tr := c.newTransport(t, kafka.Config{Topic: topic, MaxMessageBytes: 8 << 10, Concurrency: 3})
	match := c.producesTo(topic)
	var mu sync.Mutex
	var seen int
	var last kmsg.Request
	h := c.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.UnknownServerError, Count: -1, When: func(r kmsg.Request) bool {
		if !match(r) {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if r != last {
			last = r
			seen++
		}
		return seen%3 == 0
	}})
	defer h.Remove()

	const callers, calls, keys, perKey = 6, 6, 3, 8
	var (
		wg        sync.WaitGroup
		resMu     sync.Mutex
		published []*outbox.Message
		failed    int
		partial   int // keys of a call with both published and failed messages
	)
	for g := range callers {
		wg.Go(func() {
			for n := range calls {
				var in []*outbox.Message
				for i := range perKey {
					for k := range keys {
						m := messages(1, "T", fmt.Sprintf("caller-%d-key-%d", g, k))[0]
						m.Payload = json.RawMessage(fmt.Sprintf(`{"call":%d,"i":%d,"pad":"%s"}`, n, i, strings.Repeat("x", 400)))
						in = append(in, m)
					}
				}
				prepared(t, in...)
				err := tr.Publish(testCtx(t), in)
				var be *outbox.BatchError
				if err != nil && !errors.As(err, &be) {
					t.Errorf("publish = %v, want nil or a *outbox.BatchError", err)
					return
				}
				ok := map[string][]bool{}
				resMu.Lock()
				for _, m := range in {
					good := be == nil || be.Failed[m.ID] == nil
					ok[m.Key] = append(ok[m.Key], good)
					if good {
						published = append(published, m)
					} else {
						failed++
					}
				}
				resMu.Unlock()
				for key, results := range ok {
					if i := slices.Index(results, false); i >= 0 && slices.Contains(results[i:], true) {
						t.Errorf("key %s: published %v, not a prefix", key, results)
					}
					if slices.Contains(results, true) && slices.Contains(results, false) {
						resMu.Lock()
						partial++
						resMu.Unlock()
					}
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d published, %d failed, %d keys of a call cut after a prefix", len(published), failed, partial)
	if failed == 0 || len(published) == 0 || partial == 0 {
		t.Fatalf("%d published, %d failed, %d keys cut: the faults should have failed some, spared some and cut keys", len(published), failed, partial)
	}
	// Across calls a key's published messages are in call order (each caller publishes its
	// calls one after the other), so the topic must hold them in exactly that order.
	checkKeyOrder(t, published, c.consumeExactly(t, len(published), false, topic))
}
