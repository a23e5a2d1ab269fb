package outbox

import (
	"reflect"
	"testing"
)

func TestDefaultConstantsAreTheRelays(t *testing.T) {
	d := Config{}.withDefaults()
	want := Config{
		BatchSize: DefaultBatchSize, Concurrency: DefaultConcurrency, PollInterval: DefaultPollInterval,
		Lease: DefaultLease, PublishTimeout: DefaultLease / 2, MaxAttempts: DefaultMaxAttempts,
		ShutdownTimeout: DefaultShutdownTimeout, CleanupInterval: DefaultCleanupInterval,
		Backoff: Backoff{Initial: DefaultBackoffInitial, Max: DefaultBackoffMax, Multiplier: DefaultBackoffMultiplier, Jitter: DefaultBackoffJitter},
	}
	d.Owner, d.Logger, d.Clock = "", nil, nil
	if !reflect.DeepEqual(d, want) {
		t.Errorf("withDefaults() = %+v, the Default constants say %+v", d, want)
	}
}
