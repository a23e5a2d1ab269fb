package backend

import (
	"context"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/internal/attempts"
)

// WithMaxAttempts records the relay's MaxAttempts in a publish context. The relay does it for
// every batch; call it yourself only to drive middleware outside a relay (in tests).
func WithMaxAttempts(ctx context.Context, n int) context.Context {
	return attempts.With(ctx, n)
}

// MaxAttempts returns the relay's outbox.Config.MaxAttempts from a publish context, or 0 outside a
// relay.
func MaxAttempts(ctx context.Context) int {
	return attempts.From(ctx)
}

// FailureIsFinal reports whether a failed publish of m dead-letters it: the cause is permanent,
// or this was its last attempt under the relay that made ctx. Middleware uses it to log or count
// a dead letter as such.
func FailureIsFinal(ctx context.Context, m *outbox.Message, cause error) bool {
	if outbox.IsPermanent(cause) {
		return true
	}
	max := MaxAttempts(ctx)
	return max > 0 && m.Attempts+1 >= max
}
