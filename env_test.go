package outbox

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// comparable drops what a zero Config gets at random (Owner) or as code (Logger, Clock).
func comparableDefaults(c Config) Config {
	c = c.withDefaults()
	c.Owner, c.Logger, c.Clock, c.Middleware = "", nil, nil, nil
	return c
}

// Each setting's documented default is what the relay applies: setting it explicitly changes
// nothing, and its Field names a field of Config that the setting writes.
func TestRelaySettingsDefaultsAreTheRelays(t *testing.T) {
	seen := map[string]bool{}
	zero := comparableDefaults(Config{})
	for _, s := range RelaySettings() {
		if seen[s.Env] || !strings.HasPrefix(s.Env, "OUTBOX_") || s.Doc == "" || s.Set == nil {
			t.Errorf("%s: duplicate, not OUTBOX_*, or without doc or parser", s.Env)
		}
		seen[s.Env] = true
		v := reflect.ValueOf(Config{})
		for _, name := range strings.Split(s.Field, ".") {
			if v = v.FieldByName(name); !v.IsValid() {
				t.Fatalf("%s: Field %q is not a field of Config", s.Env, s.Field)
			}
		}
		switch s.Env {
		case "OUTBOX_PUBLISH_TIMEOUT", "OUTBOX_OWNER":
			continue // derived (Lease/2) or random (host-pid-random)
		}
		var c Config
		def, _, _ := strings.Cut(s.Default, ":") // "0: keep them"
		if err := s.Set(&c, def); err != nil {
			t.Fatalf("%s: default %q does not parse: %v", s.Env, s.Default, err)
		}
		if got := comparableDefaults(c); !reflect.DeepEqual(got, zero) {
			t.Errorf("%s: the documented default %s is not the relay's: %+v vs %+v", s.Env, s.Default, got, zero)
		}
	}
}

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

func TestLoadSettings(t *testing.T) {
	env := map[string]string{"OUTBOX_BATCH_SIZE": " 7 ", "OUTBOX_LEASE": "", "OUTBOX_BACKOFF_MAX": "2m", "OUTBOX_ORDERED": "maybe", "OUTBOX_CONCURRENCY": "x"}
	var c Config
	err := LoadSettings(&c, RelaySettings(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil || !strings.Contains(err.Error(), "OUTBOX_ORDERED") || !strings.Contains(err.Error(), "OUTBOX_CONCURRENCY") {
		t.Fatalf("err = %v, want both bad variables named", err)
	}
	if c.BatchSize != 7 || c.Lease != 0 || c.Backoff.Max != 2*time.Minute {
		t.Errorf("config %+v", c)
	}
	s, ok := SettingFor(RelaySettings(), Config{Backoff: Backoff{Jitter: 3}}.Validate())
	if !ok || s.Env != "OUTBOX_BACKOFF_JITTER" || s.Flag() != "backoff-jitter" {
		t.Errorf("SettingFor = %+v, %t", s, ok)
	}
	type outer struct{ Relay Config }
	var o outer
	nested := Nest(RelaySettings(), func(o *outer) *Config { return &o.Relay })
	if err := LoadSettings(&o, nested, func(k string) (string, bool) { return "3", k == "OUTBOX_MAX_ATTEMPTS" }); err != nil || o.Relay.MaxAttempts != 3 {
		t.Errorf("nested: %+v, %v", o, err)
	}
}
