package outboxtest

import (
	"context"
	"errors"
	"testing"
)

func (s *inboxSuite) testHandle(t *testing.T) {
	s.needTransactions(t)
	t.Parallel()
	h := s.newInbox(t)
	m := inboxMessage(t)
	mustRecorded(t, h, "billing", m.ID, false)
	called := 0
	mustHandle(t, h, "billing", m, func(ctx context.Context, effect func(context.Context) error) error {
		called++
		return effect(ctx)
	}, false)
	if called != 1 {
		t.Fatalf("the handler ran %d times, want 1", called)
	}
	mustRecorded(t, h, "billing", m.ID, true)
	mustEffects(t, h, "billing", m.ID, 1)
}

func (s *inboxSuite) testDuplicate(t *testing.T) {
	s.needTransactions(t)
	t.Parallel()
	h := s.newInbox(t)
	m := inboxMessage(t)
	mustHandle(t, h, "billing", m, applyEffect, false)
	for range 3 {
		mustHandle(t, h, "billing", m, func(ctx context.Context, effect func(context.Context) error) error {
			t.Error("the handler ran for a message already processed")
			return effect(ctx)
		}, true)
	}
	// A redelivery is a copy decoded afresh, not the same pointer.
	mustHandle(t, h, "billing", m.Clone(), applyEffect, true)
	mustEffects(t, h, "billing", m.ID, 1)
}

func (s *inboxSuite) testConsumers(t *testing.T) {
	s.needTransactions(t)
	t.Parallel()
	h := s.newInbox(t)
	m := inboxMessage(t)
	// Each consumer has its own record: one consumer's processing is no reason to skip another's.
	mustHandle(t, h, "billing", m, applyEffect, false)
	mustHandle(t, h, "shipping", m, applyEffect, false)
	mustHandle(t, h, "shipping", m, applyEffect, true)
	mustEffects(t, h, "billing", m.ID, 1)
	mustEffects(t, h, "shipping", m.ID, 1)
	other := inboxMessage(t)
	mustHandle(t, h, "billing", other, applyEffect, false)
	mustEffects(t, h, "billing", other.ID, 1)
}

func (s *inboxSuite) testRollback(t *testing.T) {
	s.needTransactions(t)
	t.Parallel()
	h := s.newInbox(t)
	m := inboxMessage(t)
	boom := errors.New("handler failed after its change")
	dup, err := h.Handle(testCtx(t), "billing", m, func(ctx context.Context, effect func(context.Context) error) error {
		if err := effect(ctx); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Handle returned %v, want the handler's error", err)
	}
	if dup {
		t.Fatal("a failed delivery was reported as a duplicate")
	}
	mustRecorded(t, h, "billing", m.ID, false)
	mustEffects(t, h, "billing", m.ID, 0)

	// The redelivery that follows a failure is processed, once.
	mustHandle(t, h, "billing", m, applyEffect, false)
	mustHandle(t, h, "billing", m, applyEffect, true)
	mustEffects(t, h, "billing", m.ID, 1)
}

func (s *inboxSuite) testPanic(t *testing.T) {
	s.needTransactions(t)
	t.Parallel()
	h := s.newInbox(t)
	m := inboxMessage(t)
	func() {
		defer func() {
			if r := recover(); r != "handler panic" {
				t.Fatalf("recovered %v, want the handler's panic re-raised", r)
			}
		}()
		_, _ = h.Handle(testCtx(t), "billing", m, func(ctx context.Context, effect func(context.Context) error) error {
			_ = effect(ctx)
			panic("handler panic")
		})
		t.Fatal("Handle returned although the handler panicked")
	}()
	mustRecorded(t, h, "billing", m.ID, false)
	mustEffects(t, h, "billing", m.ID, 0)
	mustHandle(t, h, "billing", m, applyEffect, false)
	mustEffects(t, h, "billing", m.ID, 1)
}
