package outboxfx_test

import (
	"testing"

	"github.com/txoutbox/outbox/outboxfx"
)

// FuzzConfigFromLookup feeds arbitrary values to the OUTBOX_* variables: parsing never panics,
// and whatever it accepts is a config the relay accepts too.
func FuzzConfigFromLookup(f *testing.F) {
	f.Add("100", "2", "1s", "30s", "true", "1.5")
	f.Add("-1", "x", "1h", "1ms", "maybe", "NaN")
	f.Add("99999999999999999999", "0", "-5s", "", "0", "1e308")
	f.Add(" 7 ", "1024", "1m30s", "10s", "FALSE", "0.5")
	f.Fuzz(func(t *testing.T, batch, concurrency, poll, lease, ordered, jitter string) {
		env := map[string]string{
			"OUTBOX_BATCH_SIZE":     batch,
			"OUTBOX_CONCURRENCY":    concurrency,
			"OUTBOX_POLL_INTERVAL":  poll,
			"OUTBOX_LEASE":          lease,
			"OUTBOX_UNORDERED":      ordered,
			"OUTBOX_BACKOFF_JITTER": jitter,
		}
		cfg, err := outboxfx.ConfigFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			return
		}
		if err := cfg.Relay.Validate(); err != nil {
			t.Fatalf("accepted a config the relay refuses: %v (env %v)", err, env)
		}
	})
}
