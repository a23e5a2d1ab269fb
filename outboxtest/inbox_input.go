package outboxtest

import (
	"errors"
	"strings"
	"testing"

	"github.com/txoutbox/outbox"
)

func (s *inboxSuite) testInboxBadInput(t *testing.T) {
	h := s.newInbox(t)
	valid := inboxMessage(t)
	withID := func(id string) *outbox.Message { m := valid.Clone(); m.ID = id; return m }
	cases := []struct {
		name     string
		consumer string
		msg      *outbox.Message
		nilFn    bool
		want     string // what the error must name
		category error
	}{
		{"EmptyConsumer", "", valid, false, "consumer", outbox.ErrInvalidArgument},
		{"LongConsumer", strings.Repeat("c", 256), valid, false, "consumer", outbox.ErrInvalidArgument},
		{"ControlInConsumer", "bill\ning", valid, false, "consumer", outbox.ErrInvalidArgument},
		{"BadUTF8Consumer", "bill\xffing", valid, false, "consumer", outbox.ErrInvalidArgument},
		{"NilMessage", "billing", nil, false, "message", outbox.ErrInvalidMessage},
		{"EmptyID", "billing", withID(""), false, "id", outbox.ErrInvalidMessage},
		{"LongID", "billing", withID(strings.Repeat("1", 256)), false, "id", outbox.ErrInvalidMessage},
		{"NULInID", "billing", withID("abc\x00def"), false, "id", outbox.ErrInvalidMessage},
		{"BadUTF8ID", "billing", withID("abc\xfe"), false, "id", outbox.ErrInvalidMessage},
		{"NilHandler", "billing", valid, true, "fn", outbox.ErrInvalidArgument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fn := applyEffect
			if c.nilFn {
				fn = nil
			}
			dup, err := h.Handle(testCtx(t), c.consumer, c.msg, fn)
			if err == nil {
				t.Fatalf("Handle accepted bad input (duplicate=%t)", dup)
			}
			if !strings.Contains(err.Error(), c.want) || !errors.Is(err, c.category) || !errors.Is(err, outbox.ErrInvalidArgument) {
				t.Fatalf("error %q does not name %q or match %v and outbox.ErrInvalidArgument", err, c.want, c.category)
			}
			if strings.Count(err.Error(), "inbox:") != 1 {
				t.Fatalf("error %q does not start with its backend once (\"<backend> inbox: handle: ...\")", err)
			}
		})
	}
	if s.f.Transactions {
		mustRecorded(t, h, "billing", valid.ID, false)
	}
}
