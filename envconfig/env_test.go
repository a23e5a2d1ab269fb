package envconfig

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

// documented is Config with every default the Default constants state (outbox's own tests check
// that they are what the relay applies).
var documented = outbox.Config{
	BatchSize: outbox.DefaultBatchSize, Concurrency: outbox.DefaultConcurrency, PollInterval: outbox.DefaultPollInterval,
	Lease: outbox.DefaultLease, MaxAttempts: outbox.DefaultMaxAttempts,
	ShutdownTimeout: outbox.DefaultShutdownTimeout, CleanupInterval: outbox.DefaultCleanupInterval,
	Backoff: outbox.Backoff{Initial: outbox.DefaultBackoffInitial, Max: outbox.DefaultBackoffMax, Multiplier: outbox.DefaultBackoffMultiplier, Jitter: outbox.DefaultBackoffJitter},
}

func field(c outbox.Config, path string) reflect.Value {
	v := reflect.ValueOf(c)
	for _, name := range strings.Split(path, ".") {
		if v = v.FieldByName(name); !v.IsValid() {
			return v
		}
	}
	return v
}

// Each setting's documented default is what the relay applies: setting it explicitly changes
// nothing, and its Field names a field of outbox.Config that the setting writes.
func TestRelaySettingsDefaultsAreTheRelays(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range RelaySettings() {
		if seen[s.Env] || !strings.HasPrefix(s.Env, "OUTBOX_") || s.Doc == "" || s.Set == nil {
			t.Errorf("%s: duplicate, not OUTBOX_*, or without doc or parser", s.Env)
		}
		seen[s.Env] = true
		if !field(outbox.Config{}, s.Field).IsValid() {
			t.Fatalf("%s: Field %q is not a field of outbox.Config", s.Env, s.Field)
		}
		switch s.Env {
		case "OUTBOX_PUBLISH_TIMEOUT", "OUTBOX_OWNER":
			continue // derived (Lease/2) or random (host-pid-random)
		}
		var c outbox.Config
		def, _, _ := strings.Cut(s.Default, ":") // "0: keep them"
		if err := s.Set(&c, def); err != nil {
			t.Fatalf("%s: default %q does not parse: %v", s.Env, s.Default, err)
		}
		if got, want := field(c, s.Field).Interface(), field(documented, s.Field).Interface(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the documented default %s is %v, the Default constant %v", s.Env, s.Default, got, want)
		}
	}
}

func TestLoadSettings(t *testing.T) {
	env := map[string]string{"OUTBOX_BATCH_SIZE": " 7 ", "OUTBOX_LEASE": "", "OUTBOX_BACKOFF_MAX": "2m", "OUTBOX_UNORDERED": "maybe", "OUTBOX_CONCURRENCY": "x"}
	var c outbox.Config
	err := LoadSettings(&c, RelaySettings(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil || !strings.Contains(err.Error(), "OUTBOX_UNORDERED") || !strings.Contains(err.Error(), "OUTBOX_CONCURRENCY") {
		t.Fatalf("err = %v, want both bad variables named", err)
	}
	if c.BatchSize != 7 || c.Lease != 0 || c.Backoff.Max != 2*time.Minute {
		t.Errorf("config %+v", c)
	}
	s, ok := SettingFor(RelaySettings(), outbox.Config{Backoff: outbox.Backoff{Jitter: 3}}.Validate())
	if !ok || s.Env != "OUTBOX_BACKOFF_JITTER" || s.Flag() != "backoff-jitter" {
		t.Errorf("SettingFor = %+v, %t", s, ok)
	}
	type outer struct{ Relay outbox.Config }
	var o outer
	nested := Nest(RelaySettings(), func(o *outer) *outbox.Config { return &o.Relay })
	if err := LoadSettings(&o, nested, func(k string) (string, bool) { return "3", k == "OUTBOX_MAX_ATTEMPTS" }); err != nil || o.Relay.MaxAttempts != 3 {
		t.Errorf("nested: %+v, %v", o, err)
	}
}
