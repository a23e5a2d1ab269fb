package outboxtest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/txoutbox/outbox"
)

func (s *storeSuite) testClaim(t *testing.T) {
	t.Run("Empty", func(t *testing.T) {
		h := s.newStore(t)
		if got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("a")}); len(got) != 0 {
			t.Fatalf("claim on an empty store returned %d messages", len(got))
		}
	})
	t.Run("OldestFirstWithinLimit", func(t *testing.T) {
		h := s.newStore(t)
		first := mustAdd(t, h, NewMessages(5, "T", "")...)
		second := mustAdd(t, h, NewMessages(5, "T", "")...)
		all := IDs(append(first, second...))
		o := owner("a")
		sameIDs(t, "first claim", mustClaim(t, h.Store, outbox.ClaimRequest{Token: o, Limit: 3}), all[:3]...)
		sameIDs(t, "second claim", mustClaim(t, h.Store, outbox.ClaimRequest{Token: o, Limit: 100}), all[3:]...)
	})
	t.Run("FieldsRoundTrip", func(t *testing.T) {
		h := s.newStore(t)
		in := &outbox.Message{
			Type:    "USER_CREATED",
			Key:     "user-42",
			Payload: json.RawMessage(`{"name":"Zoë \"the\" <admin>","tags":["a","b"],"n":1.5,"nested":{"ok":true}}`),
			Result:  json.RawMessage(`{"insertedId":"42"}`),
			Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "content-type": "application/json"},
		}
		mustAdd(t, h, in)
		if _, err := uuid.Parse(in.ID); err != nil || in.ID == "" {
			t.Fatalf("Add did not assign a UUID id: %q", in.ID)
		}
		if in.CreatedAt.IsZero() {
			t.Fatal("Add did not assign CreatedAt")
		}
		got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("a")})
		if len(got) != 1 {
			t.Fatalf("claimed %d messages, want 1", len(got))
		}
		m := got[0]
		switch {
		case m.ID != in.ID || m.Type != in.Type || m.Key != in.Key:
			t.Fatalf("claimed %q/%q/%q, want %q/%q/%q", m.ID, m.Type, m.Key, in.ID, in.Type, in.Key)
		case !jsonEqual(m.Payload, in.Payload):
			t.Fatalf("payload %s, want %s", m.Payload, in.Payload)
		case !jsonEqual(m.Result, in.Result):
			t.Fatalf("result %s, want %s", m.Result, in.Result)
		case !m.CreatedAt.Equal(in.CreatedAt):
			t.Fatalf("created at %v, want %v", m.CreatedAt, in.CreatedAt)
		case m.Attempts != 0:
			t.Fatalf("attempts %d, want 0", m.Attempts)
		case len(m.Headers) != len(in.Headers):
			t.Fatalf("headers %v, want %v", m.Headers, in.Headers)
		}
		for k, v := range in.Headers {
			if m.Headers[k] != v {
				t.Fatalf("header %s = %q, want %q", k, m.Headers[k], v)
			}
		}
	})
	t.Run("NoResultStaysEmpty", func(t *testing.T) {
		h := s.newStore(t)
		mustAdd(t, h, NewMessages(1, "T", "")...)
		got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("a")})
		if len(got) != 1 || len(got[0].Result) != 0 && string(got[0].Result) != "null" {
			t.Fatalf("a message written without a result came back with %q", got[0].Result)
		}
	})
	t.Run("OldMessageWrittenLateIsFound", func(t *testing.T) {
		// No cursor: a message that shows up after newer ones were delivered is still claimed.
		h := s.newStore(t)
		o := owner("a")
		newer := mustAdd(t, h, NewMessages(3, "T", "")...)
		mustAck(t, h.Store, o, IDs(mustClaim(t, h.Store, outbox.ClaimRequest{Token: o}))...)
		late := NewMessages(1, "T", "")[0]
		late.CreatedAt = newer[0].CreatedAt.Add(-time.Hour)
		mustAdd(t, h, late)
		sameIDs(t, "claim after a late write", mustClaim(t, h.Store, outbox.ClaimRequest{Token: o}), late.ID)
	})
	t.Run("CallerIDKept", func(t *testing.T) {
		h := s.newStore(t)
		m := NewMessages(1, "T", "")[0]
		m.ID = uuid.NewString()
		want := m.ID
		mustAdd(t, h, m)
		sameIDs(t, "claim", mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("a")}), want)
	})
}

func (s *storeSuite) testLease(t *testing.T) {
	t.Run("HeldWhileValid", func(t *testing.T) {
		h := s.newStore(t)
		mustAdd(t, h, NewMessages(3, "T", "")...)
		if got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("a"), Lease: time.Minute}); len(got) != 3 {
			t.Fatalf("first claim got %d, want 3", len(got))
		}
		if got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("b")}); len(got) != 0 {
			t.Fatalf("a second owner claimed %d leased messages", len(got))
		}
		if got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("a")}); len(got) != 0 {
			t.Fatalf("claiming again returned %d messages already leased", len(got))
		}
	})
	t.Run("ExpiredLeaseIsClaimedAgain", func(t *testing.T) {
		h := s.newStore(t)
		msgs := mustAdd(t, h, NewMessages(2, "T", "")...)
		a, b, c := owner("a"), owner("b"), owner("c")
		mustClaim(t, h.Store, outbox.ClaimRequest{Token: a, Lease: 300 * time.Millisecond})
		time.Sleep(500 * time.Millisecond)
		got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: b, Lease: time.Minute})
		sameIDs(t, "claim after expiry", got, IDs(msgs)...)
		// The old holder's ack no longer counts: b still holds the messages.
		mustAck(t, h.Store, a, IDs(msgs)...)
		mustNack(t, h.Store, b, outbox.Failure{ID: msgs[0].ID, Error: "x", Delay: 0}, outbox.Failure{ID: msgs[1].ID, Error: "x", Delay: 0})
		sameIDs(t, "claim after the stale ack", mustClaim(t, h.Store, outbox.ClaimRequest{Token: c}), IDs(msgs)...)
	})
}
