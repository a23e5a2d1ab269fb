package core

import "context"

type maxAttemptsKey struct{}

func withMaxAttempts(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, maxAttemptsKey{}, n)
}

// MaxAttempts returns the relay's Config.MaxAttempts from a publish context, or 0 outside a
// relay. Middleware uses it to tell a message's last attempt (m.Attempts+1 == MaxAttempts), whose
// failure dead-letters it, from one that will be retried.
func MaxAttempts(ctx context.Context) int {
	n, _ := ctx.Value(maxAttemptsKey{}).(int)
	return n
}
