package outboxfx

import (
	"fmt"
	"os"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/envconfig"
)

// Settings returns the OUTBOX_* variables ConfigFromEnv reads: the relay's own
// (envconfig.RelaySettings, shared with the outbox command, so both read the same names with the
// same defaults) and OUTBOX_DISABLED.
func Settings() []envconfig.Setting[Config] {
	return append(envconfig.Nest(envconfig.RelaySettings(), func(c *Config) *outbox.Config { return &c.Relay }),
		envconfig.BoolSetting("OUTBOX_DISABLED", "Disabled", "false", "build the relay but never start it (processes that only write events)",
			func(c *Config) *bool { return &c.Disabled }))
}

// ConfigFromEnv reads the relay's Config from OUTBOX_* environment variables; unset or empty
// ones keep their defaults. It has the shape of an fx constructor:
// fx.Provide(outboxfx.ConfigFromEnv).
//
// The variables, their defaults and meaning (the same as the outbox command's; durations in
// Go syntax such as 500ms, 30s, 1m; booleans true/false/1/0):
//
//	OUTBOX_BATCH_SIZE          [100]              messages per claim and per publish
//	OUTBOX_CONCURRENCY         [2]                claim-publish-ack cycles in flight
//	OUTBOX_POLL_INTERVAL       [1s]               how often an idle relay looks for work without a notification
//	OUTBOX_LEASE               [30s]              how long a claimed message stays reserved for this relay
//	OUTBOX_PUBLISH_TIMEOUT     [Lease/2]          bound on one publish; below the lease
//	OUTBOX_MAX_ATTEMPTS        [25]               failed publishes that make a message dead
//	OUTBOX_BACKOFF_INITIAL     [1s]               delay before the first retry of a failed message
//	OUTBOX_BACKOFF_MAX         [5m]               longest delay between retries
//	OUTBOX_BACKOFF_MULTIPLIER  [2]                growth of the delay after each failure
//	OUTBOX_BACKOFF_JITTER      [0.2]              random spread of each delay, as a fraction either way; negative for none
//	OUTBOX_UNORDERED           [false]            let messages with the same key go out of order (default: strictly one after another)
//	OUTBOX_OWNER               [host-pid-random]  lease owner name of this relay
//	OUTBOX_SHUTDOWN_TIMEOUT    [10s]              how long a stop waits for the batches in flight
//	OUTBOX_RETAIN_DELIVERED    [0: keep them]     with a store keeping delivered messages, delete those delivered longer ago than this
//	OUTBOX_CLEANUP_INTERVAL    [1m]               how often the deletion of delivered messages runs
//	OUTBOX_DISABLED            [false]            build the relay but never start it (processes that only write events)
func ConfigFromEnv() (Config, error) { return ConfigFromLookup(os.LookupEnv) }

// ConfigFromLookup is ConfigFromEnv reading variables through lookup (os.LookupEnv, or a map in
// tests). The error names every variable that cannot be parsed, or else the one whose value the
// relay rejects.
func ConfigFromLookup(lookup func(string) (string, bool)) (Config, error) {
	var cfg Config
	settings := Settings()
	if err := envconfig.LoadSettings(&cfg, settings, lookup); err != nil {
		return Config{}, fmt.Errorf("outboxfx: %w", err)
	}
	if err := cfg.Relay.Validate(); err != nil {
		if s, ok := envconfig.SettingFor(settings, err); ok {
			return Config{}, fmt.Errorf("outboxfx: %s: %w", s.Env, err)
		}
		return Config{}, fmt.Errorf("outboxfx: %w", err)
	}
	return cfg, nil
}
