package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/transport/kafka"
)

// A record carries the Key as its key, the envelope as its value, the headers sorted by name
// and then outbox.type and outbox.key.
func TestRecordShape(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 2, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	in := prepared(t,
		&outbox.Message{Type: "T", Key: "k-1", Payload: json.RawMessage(`{"a":1}`), Headers: map[string]string{"z": "last", "a": "first", "empty": ""}},
		&outbox.Message{Type: "U", Payload: json.RawMessage(`[1,2]`)},
	)
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatal(err)
	}
	byID := map[string]received{}
	for _, r := range c.consumeExactly(t, 2, false, topic) {
		byID[r.Msg.ID] = r
	}
	keyed, unkeyed := byID[in[0].ID], byID[in[1].ID]
	if keyed.Rec == nil || unkeyed.Rec == nil {
		t.Fatalf("received %v, want both messages", byID)
	}
	var names []string
	for _, h := range keyed.Rec.Headers {
		names = append(names, h.Key)
	}
	if want := []string{"a", "empty", "z", kafka.HeaderType, kafka.HeaderKey}; !slices.Equal(names, want) {
		t.Errorf("headers %v, want %v", names, want)
	}
	if string(keyed.Rec.Key) != "k-1" || keyed.Msg.Headers["empty"] != "" || keyed.Msg.Type != "T" {
		t.Errorf("keyed record %+v", keyed.Rec)
	}
	if unkeyed.Rec.Key != nil {
		t.Errorf("a message without a Key got the record key %q", unkeyed.Rec.Key)
	}
	for _, h := range unkeyed.Rec.Headers {
		if h.Key == kafka.HeaderKey || h.Key == kafka.HeaderID {
			t.Errorf("unkeyed envelope record has header %s", h.Key)
		}
	}
	env, err := backend.DecodeEnvelope(keyed.Rec.Value)
	if err != nil || env.ID != in[0].ID || env.Type != "T" || !env.CreatedAt.Equal(in[0].CreatedAt) {
		t.Errorf("envelope %+v, %v", env, err)
	}
}

// RawPayload: the value is the payload, and the ID travels in outbox.id.
func TestRawPayload(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 1, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic, RawPayload: true})
	in := prepared(t, &outbox.Message{Type: "T", Key: "k", Payload: json.RawMessage(`{"raw":true}`)})
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatal(err)
	}
	got := c.consumeExactly(t, 1, true, topic)[0]
	if string(got.Rec.Value) != `{"raw":true}` || got.Msg.ID != in[0].ID || got.Msg.Type != "T" || got.Msg.Key != "k" {
		t.Fatalf("raw record %q, decoded %+v", got.Rec.Value, got.Msg)
	}
}

// Routes by Type first, then Route, then Topic; a message no route claims, or one Route sends
// to a name Kafka refuses, fails permanently on its own.
func TestRouting(t *testing.T) {
	c := needCluster(t)
	def, orders, audit := c.createTopic(t, 1, nil), c.createTopic(t, 1, nil), c.createTopic(t, 1, nil)
	tr := c.newTransport(t, kafka.Config{
		Topic:  def,
		Routes: map[string]string{"ORDER_PLACED": orders},
		Route: func(m *outbox.Message) string {
			switch m.Type {
			case "AUDIT":
				return audit
			case "BAD":
				return "not a topic!"
			}
			return ""
		},
	})
	in := prepared(t,
		&outbox.Message{Type: "ORDER_PLACED", Payload: json.RawMessage(`1`)},
		&outbox.Message{Type: "AUDIT", Payload: json.RawMessage(`2`)},
		&outbox.Message{Type: "OTHER", Payload: json.RawMessage(`3`)},
		&outbox.Message{Type: "BAD", Payload: json.RawMessage(`4`)},
	)
	be := batchErr(t, tr.Publish(testCtx(t), in))
	if len(be.Failed) != 1 || !outbox.IsPermanent(be.Failed[in[3].ID]) || !strings.Contains(be.Failed[in[3].ID].Error(), "Route returned a bad topic") {
		t.Fatalf("batch error %v, want the BAD message alone, permanent", be)
	}
	for topic, want := range map[string]string{orders: in[0].ID, audit: in[1].ID, def: in[2].ID} {
		if got := c.consumeExactly(t, 1, false, topic)[0].Msg.ID; got != want {
			t.Errorf("topic %s got %s, want %s", topic, got, want)
		}
	}

	noDefault := c.newTransport(t, kafka.Config{Routes: map[string]string{"A": orders}})
	stray := prepared(t, &outbox.Message{Type: "B", Payload: json.RawMessage(`5`)})
	be = batchErr(t, noDefault.Publish(testCtx(t), stray))
	if err := be.Failed[stray[0].ID]; !outbox.IsPermanent(err) || !strings.Contains(err.Error(), "no topic for type") {
		t.Fatalf("unrouted message: %v", err)
	}
}

// What fails before producing fails alone and permanently, and holds back the later messages
// of its key, which are never sent; other keys and unkeyed messages are published.
func TestFailuresBeforeProducingStopTheirKey(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 3, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic, MaxMessageBytes: 4096})
	in := prepared(t, append(append(messages(5, "T", "a"), messages(5, "T", "b")...), messages(3, "T", "")...)...)
	in[1].Payload = json.RawMessage(`"` + strings.Repeat("x", 5000) + `"`) // a's second: too large
	in[7].Headers = map[string]string{kafka.HeaderType: "forged"}          // b's third: reserved header
	in[11].Payload = json.RawMessage(`{"broken"`)                          // unkeyed: corrupt payload

	be := batchErr(t, tr.Publish(testCtx(t), in))
	for _, i := range []int{1, 7, 11} {
		if err := be.Failed[in[i].ID]; !outbox.IsPermanent(err) {
			t.Errorf("message %d: %v, want a permanent failure", i, err)
		}
	}
	for _, i := range []int{2, 3, 4, 8, 9} {
		err := be.Failed[in[i].ID]
		if err == nil || outbox.IsPermanent(err) || !strings.Contains(err.Error(), "held back") {
			t.Errorf("message %d: %v, want held back, retryable", i, err)
		}
	}
	if len(be.Failed) != 8 {
		t.Errorf("%d failures, want 8: %v", len(be.Failed), be)
	}
	got := c.consumeExactly(t, 5, false, topic)
	want := []string{in[0].ID, in[5].ID, in[6].ID, in[10].ID, in[12].ID}
	var ids []string
	for _, r := range got {
		ids = append(ids, r.Msg.ID)
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("published %v, want %v", ids, want)
	}
}

// Keys keep their order across one large Publish with many keys interleaved, and across
// successive Publish calls; each key stays on one partition.
func TestKeyOrderAcrossBatch(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 4, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	const keys, perKey = 8, 150
	var in []*outbox.Message
	for i := range perKey {
		for k := range keys {
			m := messages(1, "T", string(rune('a'+k)))[0]
			m.Payload = json.RawMessage(`{"i":` + string(rune('0'+i%10)) + `}`)
			in = append(in, m)
		}
	}
	prepared(t, in...)
	half := len(in) / 2
	for _, batch := range [][]*outbox.Message{in[:half], in[half:]} {
		if err := tr.Publish(testCtx(t), batch); err != nil {
			t.Fatal(err)
		}
	}
	got := c.consumeExactly(t, len(in), false, topic)
	checkKeyOrder(t, in, got)
}

// checkKeyOrder fails unless got holds exactly the messages of in, each once: for each key the
// messages with that key in their order, all on one partition, and the unkeyed ones in any
// order.
func checkKeyOrder(t *testing.T, in []*outbox.Message, got []received) {
	t.Helper()
	want := map[string][]string{}
	for _, m := range in {
		want[m.Key] = append(want[m.Key], m.ID)
	}
	have := map[string][]string{}
	partition := map[string]int32{}
	for _, r := range got {
		k := r.Msg.Key
		if p, ok := partition[k]; ok && p != r.Rec.Partition && k != "" {
			t.Fatalf("key %s on partitions %d and %d", k, p, r.Rec.Partition)
		}
		partition[k] = r.Rec.Partition
		have[k] = append(have[k], r.Msg.ID)
	}
	slices.Sort(want[""])
	slices.Sort(have[""])
	for k, ids := range want {
		if !slices.Equal(have[k], ids) {
			t.Fatalf("key %q: received %d messages out of order, missing or repeated (want %d)", k, len(have[k]), len(ids))
		}
	}
	if len(got) != len(in) {
		t.Fatalf("received %d messages, want %d", len(got), len(in))
	}
}

// checkOnce fails unless got holds exactly the messages of in, each once, in any order.
func checkOnce(t *testing.T, in []*outbox.Message, got []received) {
	t.Helper()
	want := map[string]bool{}
	for _, m := range in {
		want[m.ID] = true
	}
	for _, r := range got {
		if !want[r.Msg.ID] {
			t.Fatalf("received %s, which is not one of the published messages, or twice", r.Msg.ID)
		}
		delete(want, r.Msg.ID)
	}
	if len(want) > 0 {
		t.Fatalf("%d messages missing", len(want))
	}
}

// Nothing listens on port 1: the publish fails within DeliveryTimeout, as an outage.
func TestUnreachableBroker(t *testing.T) {
	tr, err := kafka.New(context.Background(), kafka.Config{Connection: kafka.Connection{Brokers: []string{"127.0.0.1:1"}, DialTimeout: 200 * time.Millisecond}, Topic: "t", DeliveryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	start := time.Now()
	err = tr.Publish(testCtx(t), prepared(t, messages(5, "T", "k")...))
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("publish took %v with a 1s delivery timeout", took)
	}
	if !outbox.IsUnavailable(err) || outbox.IsPermanent(err) {
		t.Fatalf("publish = %v, want an outage", err)
	}
}

// A topic that does not exist (and the brokers do not create) is an outage, not a fault of
// the messages: the relay pauses until someone creates it.
func TestMissingTopic(t *testing.T) {
	c := needFake(t, "needs brokers that do not create a topic on first use (auto.create.topics.enable)")
	tr := c.newTransport(t, kafka.Config{Topic: topicName(t), DeliveryTimeout: 2 * time.Second})
	err := tr.Publish(testCtx(t), prepared(t, messages(3, "T", "")...))
	if !outbox.IsUnavailable(err) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("publish to a missing topic = %v, want an outage naming the problem", err)
	}
}

// After Close, publishes fail with outbox.ErrClosed; Close twice is fine.
func TestClose(t *testing.T) {
	c := needCluster(t)
	topic := c.createTopic(t, 1, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...)); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...)); !errors.Is(err, outbox.ErrClosed) {
		t.Fatalf("publish after close = %v, want outbox.ErrClosed", err)
	}
}

// Messages beyond what one producer client buffers go in later flushes, in order.
func TestLongPublish(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 12000 records")
	}
	c := needCluster(t)
	topic := c.createTopic(t, 2, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	in := prepared(t, append(messages(6000, "T", "x"), messages(6000, "T", "y")...)...)
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatal(err)
	}
	checkKeyOrder(t, in, c.consumeExactly(t, len(in), false, topic))
}
