package envconfig

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
)

// SettingKind is what a Setting's value is, for parsing, help and docs.
type SettingKind string

// The kinds of value a Setting takes.
const (
	KindInt      SettingKind = "integer"
	KindDuration SettingKind = "duration" // Go syntax: 500ms, 30s, 1m
	KindNumber   SettingKind = "number"   // a float
	KindBool     SettingKind = "boolean"  // true/false/1/0
	KindString   SettingKind = "string"   // taken as it is
	KindSecret   SettingKind = "secret"   // a string never printed and never taken as a flag
)

// A Setting is one OUTBOX_* environment variable that sets a field of a config of type C, with
// its documented default and meaning. A list of them is the one vocabulary that every way of
// configuring the relay shares: outboxfx.ConfigFromEnv reads the variables, the outbox command
// offers each as a flag of the same name (OUTBOX_BATCH_SIZE is --batch-size), and the docs of
// both are checked against the list. RelaySettings is the list of outbox.Config; a transport or store
// adds its own (say []Setting[sqs.Config]) and a program nests lists with Nest.
type Setting[C any] struct {
	// Env is the variable, OUTBOX_ and upper case: OUTBOX_BATCH_SIZE.
	Env string
	// Field is the field of C it sets, as outbox.ConfigError.Field names it (BatchSize,
	// outbox.Backoff.Initial), so a validation error can name the variable. "" when it sets none.
	Field string
	// Kind says how the value parses.
	Kind SettingKind
	// Default is the default as the docs state it: 100, 1s, Lease/2.
	Default string
	// Doc says what it does, in one line.
	Doc string
	// Set parses value (trimmed, never empty) into c. Its error never repeats a KindSecret value.
	Set func(c *C, value string) error
}

// Flag is the outbox command's flag for the setting: Env without OUTBOX_, lower case, with
// dashes: OUTBOX_BATCH_SIZE is batch-size.
func (s Setting[C]) Flag() string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.Env, "OUTBOX_")), "_", "-")
}

// RelaySettings returns the variables of outbox.Config, in the order the docs list them. Logger,
// outbox.Middleware and Clock are code, not settings.
func RelaySettings() []Setting[outbox.Config] {
	return []Setting[outbox.Config]{
		IntSetting("OUTBOX_BATCH_SIZE", "BatchSize", strconv.Itoa(outbox.DefaultBatchSize), "messages per claim and per publish",
			func(c *outbox.Config) *int { return &c.BatchSize }),
		IntSetting("OUTBOX_CONCURRENCY", "Concurrency", strconv.Itoa(outbox.DefaultConcurrency), "claim-publish-ack cycles in flight",
			func(c *outbox.Config) *int { return &c.Concurrency }),
		DurationSetting("OUTBOX_POLL_INTERVAL", "PollInterval", docDuration(outbox.DefaultPollInterval), "how often an idle relay looks for work without a notification",
			func(c *outbox.Config) *time.Duration { return &c.PollInterval }),
		DurationSetting("OUTBOX_LEASE", "Lease", docDuration(outbox.DefaultLease), "how long a claimed message stays reserved for this relay",
			func(c *outbox.Config) *time.Duration { return &c.Lease }),
		DurationSetting("OUTBOX_PUBLISH_TIMEOUT", "PublishTimeout", "Lease/2", "bound on one publish; below the lease",
			func(c *outbox.Config) *time.Duration { return &c.PublishTimeout }),
		IntSetting("OUTBOX_MAX_ATTEMPTS", "MaxAttempts", strconv.Itoa(outbox.DefaultMaxAttempts), "failed publishes that make a message dead",
			func(c *outbox.Config) *int { return &c.MaxAttempts }),
		DurationSetting("OUTBOX_BACKOFF_INITIAL", "Backoff.Initial", docDuration(outbox.DefaultBackoffInitial), "delay before the first retry of a failed message",
			func(c *outbox.Config) *time.Duration { return &c.Backoff.Initial }),
		DurationSetting("OUTBOX_BACKOFF_MAX", "Backoff.Max", docDuration(outbox.DefaultBackoffMax), "longest delay between retries",
			func(c *outbox.Config) *time.Duration { return &c.Backoff.Max }),
		NumberSetting("OUTBOX_BACKOFF_MULTIPLIER", "Backoff.Multiplier", strconv.FormatFloat(outbox.DefaultBackoffMultiplier, 'g', -1, 64), "growth of the delay after each failure",
			func(c *outbox.Config) *float64 { return &c.Backoff.Multiplier }),
		NumberSetting("OUTBOX_BACKOFF_JITTER", "Backoff.Jitter", strconv.FormatFloat(outbox.DefaultBackoffJitter, 'g', -1, 64), "random spread of each delay, as a fraction either way; negative for none",
			func(c *outbox.Config) *float64 { return &c.Backoff.Jitter }),
		BoolSetting("OUTBOX_UNORDERED", "Unordered", "false", "let messages with the same key go out of order (default: strictly one after another)",
			func(c *outbox.Config) *bool { return &c.Unordered }),
		StringSetting("OUTBOX_OWNER", "Owner", "host-pid-random", "lease owner name of this relay",
			func(c *outbox.Config) *string { return &c.Owner }),
		DurationSetting("OUTBOX_SHUTDOWN_TIMEOUT", "ShutdownTimeout", docDuration(outbox.DefaultShutdownTimeout), "how long a stop waits for the batches in flight",
			func(c *outbox.Config) *time.Duration { return &c.ShutdownTimeout }),
		DurationSetting("OUTBOX_RETAIN_DELIVERED", "RetainDelivered", "0: keep them", "with a store keeping delivered messages, delete those delivered longer ago than this",
			func(c *outbox.Config) *time.Duration { return &c.RetainDelivered }),
		DurationSetting("OUTBOX_CLEANUP_INTERVAL", "CleanupInterval", docDuration(outbox.DefaultCleanupInterval), "how often the deletion of delivered messages runs",
			func(c *outbox.Config) *time.Duration { return &c.CleanupInterval }),
	}
}

// docDuration writes d as the docs do: 5m rather than 5m0s.
func docDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// LoadSettings sets the fields of c from the variables lookup (os.LookupEnv) finds; a variable
// unset or empty leaves its field alone. The error names every variable that does not parse,
// each as "OUTBOX_X: cause".
func LoadSettings[C any](c *C, settings []Setting[C], lookup func(string) (string, bool)) error {
	var errs []error
	for _, s := range settings {
		raw, ok := lookup(s.Env)
		raw = strings.TrimSpace(raw)
		if !ok || raw == "" {
			continue
		}
		if err := s.Set(c, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Env, err))
		}
	}
	return errors.Join(errs...)
}

// SettingFor returns the setting of settings that sets the field a *outbox.ConfigError in err names,
// so that a validation error can be reported under the variable or flag the user wrote.
func SettingFor[C any](settings []Setting[C], err error) (Setting[C], bool) {
	var ce *outbox.ConfigError
	if !errors.As(err, &ce) || ce.Field == "" {
		return Setting[C]{}, false
	}
	for _, s := range settings {
		if s.Field == ce.Field {
			return s, true
		}
	}
	return Setting[C]{}, false
}

// Nest lifts settings of an inner config C to an outer one P, whose field returns the C inside
// a P: outboxfx.Config holds a outbox.Config, the outbox command holds a outbox.Config and a transport's.
func Nest[P, C any](settings []Setting[C], field func(*P) *C) []Setting[P] {
	out := make([]Setting[P], len(settings))
	for i, s := range settings {
		set := s.Set
		out[i] = Setting[P]{Env: s.Env, Field: s.Field, Kind: s.Kind, Default: s.Default, Doc: s.Doc,
			Set: func(p *P, v string) error { return set(field(p), v) }}
	}
	return out
}

// IntSetting is a Setting of an int field.
func IntSetting[C any](env, field, def, doc string, ptr func(*C) *int) Setting[C] {
	return Setting[C]{Env: env, Field: field, Kind: KindInt, Default: def, Doc: doc, Set: func(c *C, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		*ptr(c) = n
		return nil
	}}
}

// DurationSetting is a Setting of a time.Duration field, in Go syntax (500ms, 30s, 1m).
func DurationSetting[C any](env, field, def, doc string, ptr func(*C) *time.Duration) Setting[C] {
	return Setting[C]{Env: env, Field: field, Kind: KindDuration, Default: def, Doc: doc, Set: func(c *C, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration (examples: 500ms, 30s, 1m)", v)
		}
		*ptr(c) = d
		return nil
	}}
}

// NumberSetting is a Setting of a float64 field; NaN and infinities are refused.
func NumberSetting[C any](env, field, def, doc string, ptr func(*C) *float64) Setting[C] {
	return Setting[C]{Env: env, Field: field, Kind: KindNumber, Default: def, Doc: doc, Set: func(c *C, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a number", v)
		}
		*ptr(c) = f
		return nil
	}}
}

// BoolSetting is a Setting of a bool field: true, false, 1, 0 and the other forms of
// strconv.ParseBool.
func BoolSetting[C any](env, field, def, doc string, ptr func(*C) *bool) Setting[C] {
	return Setting[C]{Env: env, Field: field, Kind: KindBool, Default: def, Doc: doc, Set: func(c *C, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", v)
		}
		*ptr(c) = b
		return nil
	}}
}

// StringSetting is a Setting of a string field, taken as it is.
func StringSetting[C any](env, field, def, doc string, ptr func(*C) *string) Setting[C] {
	return Setting[C]{Env: env, Field: field, Kind: KindString, Default: def, Doc: doc, Set: func(c *C, v string) error {
		*ptr(c) = v
		return nil
	}}
}

// SecretSetting is a Setting of a string field that holds a credential: it is read from the
// environment only (the outbox command offers no flag for it, since every user of a machine can
// read the process list) and never printed.
func SecretSetting[C any](env, field, doc string, ptr func(*C) *string) Setting[C] {
	return Setting[C]{Env: env, Field: field, Kind: KindSecret, Default: "none", Doc: doc, Set: func(c *C, v string) error {
		*ptr(c) = v
		return nil
	}}
}
