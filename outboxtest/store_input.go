package outboxtest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

func (s *storeSuite) testBadInput(t *testing.T) {
	h := s.newStore(t)
	valid := func() *outbox.Message { return NewMessages(1, "T", "")[0] }
	big := `"` + strings.Repeat("x", s.f.MaxPayloadBytes) + `"`
	cases := []struct {
		name string
		msg  *outbox.Message
		want string
	}{
		{"EmptyType", &outbox.Message{Payload: json.RawMessage(`{}`)}, "type"},
		{"EmptyPayload", &outbox.Message{Type: "T"}, "payload"},
		{"InvalidJSON", &outbox.Message{Type: "T", Payload: json.RawMessage(`{"a":`)}, "payload"},
		{"InvalidResult", &outbox.Message{Type: "T", Payload: json.RawMessage(`{}`), Result: json.RawMessage(`nope`)}, "result"},
		{"Oversized", &outbox.Message{Type: "T", Payload: json.RawMessage(big)}, "payload"},
		{"BadID", &outbox.Message{ID: "1; drop table users", Type: "T", Payload: json.RawMessage(`{}`)}, "id"},
		{"ControlInType", &outbox.Message{Type: "T\x00", Payload: json.RawMessage(`{}`)}, "type"},
		{"Nil", nil, "nil"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			good := valid()
			err := h.Add(testCtx(t), good, c.msg)
			if err == nil {
				t.Fatal("Add accepted an invalid message")
			}
			if !errors.Is(err, outbox.ErrInvalidMessage) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %q or match outbox.ErrInvalidMessage", err, c.want)
			}
		})
	}
	// Nothing of a refused batch was stored, not even its valid messages.
	if got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("a")}); len(got) != 0 {
		t.Fatalf("refused writes stored %d messages", len(got))
	}

	t.Run("DuplicateID", func(t *testing.T) {
		if s.f.AcceptsDuplicateIDs {
			t.Skip("the store cannot refuse a used ID (StoreFeatures.AcceptsDuplicateIDs)")
		}
		first := valid()
		mustAdd(t, h, first)
		again := valid()
		again.ID = first.ID
		if err := h.Add(testCtx(t), again); err == nil {
			t.Fatal("Add accepted a second message with the same ID")
		}
		a := owner("a")
		sameIDs(t, "claim after a duplicate write", mustClaim(t, h.Store, outbox.ClaimRequest{Token: a}), first.ID)
		mustAck(t, h.Store, a, first.ID)
	})
	t.Run("EmptyToken", func(t *testing.T) {
		_, ackErr := h.Store.Ack(testCtx(t), "", []string{valid().ID})
		_, nackErr := h.Store.Nack(testCtx(t), "", []outbox.Failure{{ID: valid().ID, Error: "x"}})
		for op, err := range map[string]error{"ack": ackErr, "nack": nackErr} {
			if !errors.Is(err, outbox.ErrInvalidArgument) {
				t.Errorf("%s with an empty token = %v, want an error matching outbox.ErrInvalidArgument", op, err)
			}
		}
	})
	t.Run("InvalidClaim", func(t *testing.T) {
		for _, req := range []outbox.ClaimRequest{
			{Token: "", Limit: 1, Lease: time.Second},
			{Token: "a", Limit: 0, Lease: time.Second},
			{Token: "a", Limit: 1, Lease: 0},
		} {
			_, err := h.Store.Claim(testCtx(t), req)
			if !errors.Is(err, outbox.ErrInvalidArgument) {
				t.Fatalf("claim %+v = %v, want an error matching outbox.ErrInvalidArgument", req, err)
			}
		}
	})
}
