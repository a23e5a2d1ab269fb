package fxmodule

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/txoutbox/outbox/core"
)

// envVar is one OUTBOX_* variable: the core.Config field it sets, so a validation error can name
// the variable, and how to parse it.
type envVar struct {
	name  string
	field string
	set   func(cfg *Config, value string) error
}

// envVars lists every variable ConfigFromEnv reads. Durations use Go syntax (500ms, 30s, 1m).
var envVars = []envVar{
	{"OUTBOX_BATCH_SIZE", "BatchSize", intVar(func(c *Config) *int { return &c.Relay.BatchSize })},
	{"OUTBOX_CONCURRENCY", "Concurrency", intVar(func(c *Config) *int { return &c.Relay.Concurrency })},
	{"OUTBOX_POLL_INTERVAL", "PollInterval", durationVar(func(c *Config) *time.Duration { return &c.Relay.PollInterval })},
	{"OUTBOX_LEASE", "Lease", durationVar(func(c *Config) *time.Duration { return &c.Relay.Lease })},
	{"OUTBOX_PUBLISH_TIMEOUT", "PublishTimeout", durationVar(func(c *Config) *time.Duration { return &c.Relay.PublishTimeout })},
	{"OUTBOX_MAX_ATTEMPTS", "MaxAttempts", intVar(func(c *Config) *int { return &c.Relay.MaxAttempts })},
	{"OUTBOX_BACKOFF_INITIAL", "Backoff.Initial", durationVar(func(c *Config) *time.Duration { return &c.Relay.Backoff.Initial })},
	{"OUTBOX_BACKOFF_MAX", "Backoff.Max", durationVar(func(c *Config) *time.Duration { return &c.Relay.Backoff.Max })},
	{"OUTBOX_BACKOFF_MULTIPLIER", "Backoff.Multiplier", floatVar(func(c *Config) *float64 { return &c.Relay.Backoff.Multiplier })},
	{"OUTBOX_BACKOFF_JITTER", "Backoff.Jitter", floatVar(func(c *Config) *float64 { return &c.Relay.Backoff.Jitter })},
	{"OUTBOX_ORDERED", "Ordered", boolVar(func(c *Config) *bool { return &c.Relay.Ordered })},
	{"OUTBOX_OWNER", "Owner", func(c *Config, v string) error { c.Relay.Owner = v; return nil }},
	{"OUTBOX_SHUTDOWN_TIMEOUT", "ShutdownTimeout", durationVar(func(c *Config) *time.Duration { return &c.Relay.ShutdownTimeout })},
	{"OUTBOX_RETAIN_DELIVERED", "RetainDelivered", durationVar(func(c *Config) *time.Duration { return &c.Relay.RetainDelivered })},
	{"OUTBOX_CLEANUP_INTERVAL", "CleanupInterval", durationVar(func(c *Config) *time.Duration { return &c.Relay.CleanupInterval })},
	{"OUTBOX_DISABLED", "", boolVar(func(c *Config) *bool { return &c.Disabled })},
}

// ConfigFromEnv reads the relay's Config from OUTBOX_* environment variables; unset or empty
// ones keep their defaults. See ConfigFromLookup for the variables. It has the shape of an fx
// constructor: fx.Provide(fxmodule.ConfigFromEnv).
func ConfigFromEnv() (Config, error) { return ConfigFromLookup(os.LookupEnv) }

// ConfigFromLookup is ConfigFromEnv reading variables through lookup (os.LookupEnv, or a map in
// tests). It reads OUTBOX_BATCH_SIZE, OUTBOX_CONCURRENCY, OUTBOX_MAX_ATTEMPTS (integers);
// OUTBOX_POLL_INTERVAL, OUTBOX_LEASE, OUTBOX_PUBLISH_TIMEOUT, OUTBOX_SHUTDOWN_TIMEOUT,
// OUTBOX_RETAIN_DELIVERED, OUTBOX_CLEANUP_INTERVAL, OUTBOX_BACKOFF_INITIAL, OUTBOX_BACKOFF_MAX
// (durations such as 500ms or 1m); OUTBOX_BACKOFF_MULTIPLIER, OUTBOX_BACKOFF_JITTER (numbers);
// OUTBOX_ORDERED, OUTBOX_DISABLED (true/false/1/0); and OUTBOX_OWNER. The error names every
// variable that cannot be parsed, or else the one whose value the relay rejects.
func ConfigFromLookup(lookup func(string) (string, bool)) (Config, error) {
	var cfg Config
	var errs []error
	for _, v := range envVars {
		raw, ok := lookup(v.name)
		raw = strings.TrimSpace(raw)
		if !ok || raw == "" {
			continue
		}
		if err := v.set(&cfg, raw); err != nil {
			errs = append(errs, fmt.Errorf("fxmodule: %s: %w", v.name, err))
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	if err := cfg.Relay.Validate(); err != nil {
		var ce *core.ConfigError
		if errors.As(err, &ce) {
			for _, v := range envVars {
				if v.field == ce.Field {
					return Config{}, fmt.Errorf("fxmodule: %s: %w", v.name, err)
				}
			}
		}
		return Config{}, fmt.Errorf("fxmodule: %w", err)
	}
	return cfg, nil
}

func intVar(field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		*field(c) = n
		return nil
	}
}

func durationVar(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration (examples: 500ms, 30s, 1m)", v)
		}
		*field(c) = d
		return nil
	}
}

func floatVar(field func(*Config) *float64) func(*Config, string) error {
	return func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a number", v)
		}
		*field(c) = f
		return nil
	}
}

func boolVar(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", v)
		}
		*field(c) = b
		return nil
	}
}
