package outboxtest

import (
	"errors"
	"strings"
	"testing"

	"github.com/txoutbox/outbox/core"
)

func (s *inboxSuite) testInboxBadInput(t *testing.T) {
	h := s.newInbox(t)
	valid := inboxMessage(t)
	withID := func(id string) *core.Message { m := valid.Clone(); m.ID = id; return m }
	cases := []struct {
		name     string
		consumer string
		msg      *core.Message
		nilFn    bool
		want     string // what the error must name
		category error
	}{
		{"EmptyConsumer", "", valid, false, "consumer", core.ErrInvalidArgument},
		{"LongConsumer", strings.Repeat("c", 256), valid, false, "consumer", core.ErrInvalidArgument},
		{"ControlInConsumer", "bill\ning", valid, false, "consumer", core.ErrInvalidArgument},
		{"BadUTF8Consumer", "bill\xffing", valid, false, "consumer", core.ErrInvalidArgument},
		{"NilMessage", "billing", nil, false, "message", core.ErrInvalidMessage},
		{"EmptyID", "billing", withID(""), false, "id", core.ErrInvalidMessage},
		{"LongID", "billing", withID(strings.Repeat("1", 256)), false, "id", core.ErrInvalidMessage},
		{"NULInID", "billing", withID("abc\x00def"), false, "id", core.ErrInvalidMessage},
		{"BadUTF8ID", "billing", withID("abc\xfe"), false, "id", core.ErrInvalidMessage},
		{"NilHandler", "billing", valid, true, "fn", core.ErrInvalidArgument},
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
			if !strings.Contains(err.Error(), c.want) || !errors.Is(err, c.category) || !errors.Is(err, core.ErrInvalidArgument) {
				t.Fatalf("error %q does not name %q or match %v and core.ErrInvalidArgument", err, c.want, c.category)
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
