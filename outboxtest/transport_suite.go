package outboxtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

func (s *transportSuite) receive(t *testing.T, h TransportHarness, n int) []*outbox.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := h.Receive(ctx, n)
	if err != nil {
		t.Fatalf("received %d of %d messages: %v", len(got), n, err)
	}
	return got
}

func prepared(t *testing.T, msgs ...*outbox.Message) []*outbox.Message {
	t.Helper()
	if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func (s *transportSuite) testRoundTrip(t *testing.T) {
	h := s.newTransport(t)
	in := prepared(t, &outbox.Message{
		Type:    "USER_CREATED",
		Key:     "user-42",
		Payload: json.RawMessage(`{"name":"Zoë \"the\" <admin>","n":1.5}`),
		Result:  json.RawMessage(`{"insertedId":"42"}`),
		Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "acme"},
	})[0]
	if err := h.Transport.Publish(testCtx(t), []*outbox.Message{in}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got := s.receive(t, h, 1)[0]
	switch {
	case got.ID != in.ID || got.Type != in.Type:
		t.Fatalf("received %s/%s, want %s/%s", got.ID, got.Type, in.ID, in.Type)
	case !jsonEqual(got.Payload, in.Payload):
		t.Fatalf("payload %s, want %s", got.Payload, in.Payload)
	case !jsonEqual(got.Result, in.Result):
		t.Fatalf("result %s, want %s", got.Result, in.Result)
	case !got.CreatedAt.Equal(in.CreatedAt):
		t.Fatalf("created at %v, want %v", got.CreatedAt, in.CreatedAt)
	case s.f.Keys && got.Key != in.Key:
		t.Fatalf("key %q, want %q", got.Key, in.Key)
	}
	if s.f.Headers {
		for k, v := range in.Headers {
			if got.Headers[k] != v {
				t.Fatalf("header %s = %q, want %q (all: %v)", k, got.Headers[k], v, got.Headers)
			}
		}
	}
}

func (s *transportSuite) testBatch(t *testing.T) {
	h := s.newTransport(t)
	if err := h.Transport.Publish(testCtx(t), nil); err != nil {
		t.Fatalf("publishing an empty batch: %v", err)
	}
	in := prepared(t, NewMessages(25, "T", "")...)
	if err := h.Transport.Publish(testCtx(t), in); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got := s.receive(t, h, len(in))
	want := map[string]bool{}
	for _, m := range in {
		want[m.ID] = true
	}
	for _, m := range got {
		if !want[m.ID] {
			t.Fatalf("received %s, which is not one of the published messages (or twice)", m.ID)
		}
		delete(want, m.ID)
	}
}

func (s *transportSuite) testOrdered(t *testing.T) {
	if !s.f.Ordered {
		t.Skip("transport does not keep order")
	}
	h := s.newTransport(t)
	in := prepared(t, NewMessages(30, "T", "k")...)
	for _, batch := range [][]*outbox.Message{in[:20], in[20:]} {
		if err := h.Transport.Publish(testCtx(t), batch); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	got := s.receive(t, h, len(in))
	sameIDs(t, "received order", got, IDs(in)...)
}

func (s *transportSuite) testOversized(t *testing.T) {
	if s.f.MaxMessageBytes == 0 {
		t.Skip("transport has no size limit to test")
	}
	h := s.newTransport(t)
	in := prepared(t, NewMessages(3, "T", "")...)
	in[1].Payload = json.RawMessage(fmt.Sprintf(`"%s"`, strings.Repeat("x", s.f.MaxMessageBytes)))
	err := h.Transport.Publish(testCtx(t), in)
	var be *outbox.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("publish with one oversized message = %v, want a *outbox.BatchError", err)
	}
	if len(be.Failed) != 1 || be.Failed[in[1].ID] == nil || !outbox.IsPermanent(be.Failed[in[1].ID]) {
		t.Fatalf("batch error %v, want exactly the oversized message, permanent", be)
	}
	got := s.receive(t, h, 2)
	for _, m := range got {
		if m.ID == in[1].ID {
			t.Fatal("the oversized message was delivered")
		}
	}
}

func (s *transportSuite) testCancelled(t *testing.T) {
	h := s.newTransport(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Transport.Publish(ctx, prepared(t, NewMessages(1, "T", "")...)); err == nil {
		t.Fatal("publish with a cancelled context succeeded")
	}
}
