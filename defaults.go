package outbox

import "time"

// The documented defaults of Config and Backoff: what a zero field means. They are exported so
// that the docs, the outbox command and outboxfx state the same values as the relay applies
// (see Settings). PublishTimeout has no constant: its default is half the Lease in use.
const (
	DefaultBatchSize       = 100
	DefaultConcurrency     = 2
	DefaultPollInterval    = time.Second
	DefaultLease           = 30 * time.Second
	DefaultMaxAttempts     = 25
	DefaultShutdownTimeout = 10 * time.Second
	DefaultCleanupInterval = time.Minute

	DefaultBackoffInitial    = time.Second
	DefaultBackoffMax        = 5 * time.Minute
	DefaultBackoffMultiplier = 2.0
	DefaultBackoffJitter     = 0.2
)
