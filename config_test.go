package outbox_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		cfg   outbox.Config
		field string
	}{
		{"Zero", outbox.Config{}, ""},
		{"Tuned", outbox.Config{BatchSize: 500, Concurrency: 8, Lease: time.Minute, PublishTimeout: 30 * time.Second}, ""},
		{"NegativeBatch", outbox.Config{BatchSize: -1}, "BatchSize"},
		{"HugeBatch", outbox.Config{BatchSize: 1_000_000}, "BatchSize"},
		{"NegativeConcurrency", outbox.Config{Concurrency: -1}, "Concurrency"},
		{"NegativePoll", outbox.Config{PollInterval: -time.Second}, "PollInterval"},
		{"NegativeLease", outbox.Config{Lease: -time.Second}, "Lease"},
		{"PublishOutlivesLease", outbox.Config{Lease: time.Second, PublishTimeout: 2 * time.Second}, "PublishTimeout"},
		{"NegativeAttempts", outbox.Config{MaxAttempts: -3}, "MaxAttempts"},
		{"BackoffMaxBelowInitial", outbox.Config{Backoff: outbox.Backoff{Initial: time.Minute, Max: time.Second}}, "Backoff.Max"},
		{"BackoffShrinks", outbox.Config{Backoff: outbox.Backoff{Multiplier: 0.5}}, "Backoff.Multiplier"},
		{"LongOwner", outbox.Config{Owner: strings.Repeat("o", 201)}, "Owner"},
		{"LeaseTooShort", outbox.Config{Lease: time.Nanosecond}, "Lease"},
		{"PublishTimeoutTooShort", outbox.Config{PublishTimeout: time.Millisecond}, "PublishTimeout"},
		{"PollTooFast", outbox.Config{PollInterval: time.Nanosecond}, "PollInterval"},
		{"SmallestLease", outbox.Config{Lease: outbox.MinLease}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			var ce *outbox.ConfigError
			if !errors.As(err, &ce) || ce.Field != c.field || !errors.Is(err, outbox.ErrInvalidConfig) {
				t.Fatalf("error = %v, want one naming %s", err, c.field)
			}
			if _, err := outbox.NewRelay(memstore.New(), memory.New(), c.cfg); err == nil {
				t.Fatal("NewRelay accepted the invalid config")
			}
		})
	}
	if _, err := outbox.NewRelay(nil, memory.New(), outbox.Config{}); err == nil {
		t.Fatal("NewRelay accepted a nil store")
	}
	if _, err := outbox.NewRelay(memstore.New(), nil, outbox.Config{}); err == nil {
		t.Fatal("NewRelay accepted a nil transport")
	}
}

func TestConfigDefaults(t *testing.T) {
	r, err := outbox.NewRelay(memstore.New(), memory.New(), outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Config()
	if c.BatchSize != 100 || c.Concurrency != 2 || c.PollInterval != time.Second || c.Lease != 30*time.Second ||
		c.PublishTimeout != 15*time.Second || c.MaxAttempts != 25 || c.Logger == nil || c.Owner == "" {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := outbox.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: -1}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 500: time.Second} {
		if got := b.Delay(n); got != want {
			t.Errorf("Delay(%d) = %v, want %v", n, got, want)
		}
	}
	b.Jitter = 0.5
	for range 100 {
		if d := b.Delay(2); d < 100*time.Millisecond || d > 300*time.Millisecond {
			t.Fatalf("jittered delay %v outside ±50%% of 200ms", d)
		}
	}
}
