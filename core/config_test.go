package core_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox/core"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		cfg   core.Config
		field string
	}{
		{"Zero", core.Config{}, ""},
		{"Tuned", core.Config{BatchSize: 500, Concurrency: 8, Lease: time.Minute, PublishTimeout: 30 * time.Second}, ""},
		{"NegativeBatch", core.Config{BatchSize: -1}, "BatchSize"},
		{"HugeBatch", core.Config{BatchSize: 1_000_000}, "BatchSize"},
		{"NegativeConcurrency", core.Config{Concurrency: -1}, "Concurrency"},
		{"NegativePoll", core.Config{PollInterval: -time.Second}, "PollInterval"},
		{"NegativeLease", core.Config{Lease: -time.Second}, "Lease"},
		{"PublishOutlivesLease", core.Config{Lease: time.Second, PublishTimeout: 2 * time.Second}, "PublishTimeout"},
		{"NegativeAttempts", core.Config{MaxAttempts: -3}, "MaxAttempts"},
		{"BackoffMaxBelowInitial", core.Config{Backoff: core.Backoff{Initial: time.Minute, Max: time.Second}}, "Backoff.Max"},
		{"BackoffShrinks", core.Config{Backoff: core.Backoff{Multiplier: 0.5}}, "Backoff.Multiplier"},
		{"LongOwner", core.Config{Owner: strings.Repeat("o", 201)}, "Owner"},
		{"LeaseTooShort", core.Config{Lease: time.Nanosecond}, "Lease"},
		{"PublishTimeoutTooShort", core.Config{PublishTimeout: time.Millisecond}, "PublishTimeout"},
		{"PollTooFast", core.Config{PollInterval: time.Nanosecond}, "PollInterval"},
		{"SmallestLease", core.Config{Lease: core.MinLease}, ""},
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
			var ce *core.ConfigError
			if !errors.As(err, &ce) || ce.Field != c.field || !errors.Is(err, core.ErrInvalidConfig) {
				t.Fatalf("error = %v, want one naming %s", err, c.field)
			}
			if _, err := core.NewRelay(memstore.New(), memory.New(), c.cfg); err == nil {
				t.Fatal("NewRelay accepted the invalid config")
			}
		})
	}
	if _, err := core.NewRelay(nil, memory.New(), core.Config{}); err == nil {
		t.Fatal("NewRelay accepted a nil store")
	}
	if _, err := core.NewRelay(memstore.New(), nil, core.Config{}); err == nil {
		t.Fatal("NewRelay accepted a nil transport")
	}
}

func TestConfigDefaults(t *testing.T) {
	r, err := core.NewRelay(memstore.New(), memory.New(), core.Config{})
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
	b := core.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: -1}
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
