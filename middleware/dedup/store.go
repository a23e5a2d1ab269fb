package dedup

import (
	"context"
	"time"
)

// Store remembers which message IDs were published. Implementations are safe for concurrent
// use; several relays share one Store (RedisStore) to dedupe each other's redeliveries.
type Store interface {
	// Seen returns the subset of ids that were marked and whose mark has not expired.
	Seen(ctx context.Context, ids []string) (map[string]bool, error)
	// Mark records ids as published for ttl.
	Mark(ctx context.Context, ids []string, ttl time.Duration) error
}
