// Package attempts carries the relay's MaxAttempts in a publish context, from the relay (the
// root package) to what reads it (package backend), which cannot share an unexported key.
package attempts

import "context"

type key struct{}

// With records n in ctx.
func With(ctx context.Context, n int) context.Context { return context.WithValue(ctx, key{}, n) }

// From returns what With recorded, or 0.
func From(ctx context.Context) int {
	n, _ := ctx.Value(key{}).(int)
	return n
}
