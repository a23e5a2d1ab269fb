package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/txoutbox/outbox"
)

// WriteHook runs on every message a store writes, before it is validated and stored, with the
// writer's context. The tracing middleware uses one to copy the current trace context into
// Headers, so the publish span can continue the trace of the request that wrote the event.
type WriteHook func(ctx context.Context, m *outbox.Message)

// WriteOptions is what a store's write side passes to Prepare.
type WriteOptions struct {
	// MaxPayloadBytes bounds Payload plus Result. Default DefaultMaxPayloadBytes.
	MaxPayloadBytes int
	// Hooks run on each message in order.
	Hooks []WriteHook
	// Now is the write time. Default time.Now().
	Now time.Time
}

// Prepare readies msgs for storage: it runs the write hooks, assigns ID (UUIDv7) and CreatedAt
// where unset, and validates each message. Every store's Add calls it, so a message is checked
// the same way whichever backend stores it. The error names the message index and the field.
func Prepare(ctx context.Context, msgs []*outbox.Message, opts WriteOptions) error {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC().Truncate(time.Millisecond)
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("message %d: %w", i, &outbox.FieldError{Field: "message", Problem: "is nil"})
		}
		for _, hook := range opts.Hooks {
			hook(ctx, m)
		}
		if err := m.Validate(opts.MaxPayloadBytes); err != nil {
			return fmt.Errorf("message %d (type %q): %w", i, m.Type, err)
		}
		if m.ID == "" {
			id, err := uuid.NewV7()
			if err != nil {
				return fmt.Errorf("message %d: new id: %w", i, err)
			}
			m.ID = id.String()
		}
		if m.CreatedAt.IsZero() {
			m.CreatedAt = now
		} else {
			m.CreatedAt = m.CreatedAt.UTC().Truncate(time.Millisecond)
		}
	}
	return nil
}
