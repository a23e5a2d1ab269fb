package outboxfx_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxfx"
)

var update = flag.Bool("update", false, "rewrite the generated documentation")

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestConfigFromLookup(t *testing.T) {
	full := map[string]string{
		"OUTBOX_BATCH_SIZE":         "250",
		"OUTBOX_CONCURRENCY":        "4",
		"OUTBOX_POLL_INTERVAL":      "250ms",
		"OUTBOX_LEASE":              "1m",
		"OUTBOX_PUBLISH_TIMEOUT":    "20s",
		"OUTBOX_MAX_ATTEMPTS":       "10",
		"OUTBOX_BACKOFF_INITIAL":    "2s",
		"OUTBOX_BACKOFF_MAX":        "10m",
		"OUTBOX_BACKOFF_MULTIPLIER": "3",
		"OUTBOX_BACKOFF_JITTER":     "0.1",
		"OUTBOX_UNORDERED":          "true",
		"OUTBOX_OWNER":              "orders-worker-1",
		"OUTBOX_SHUTDOWN_TIMEOUT":   "5s",
		"OUTBOX_RETAIN_DELIVERED":   "168h",
		"OUTBOX_CLEANUP_INTERVAL":   "10m",
		"OUTBOX_DISABLED":           "1",
	}
	want := outboxfx.Config{
		Relay: outbox.Config{
			BatchSize: 250, Concurrency: 4, PollInterval: 250 * time.Millisecond, Lease: time.Minute,
			PublishTimeout: 20 * time.Second, MaxAttempts: 10,
			Backoff:   outbox.Backoff{Initial: 2 * time.Second, Max: 10 * time.Minute, Multiplier: 3, Jitter: 0.1},
			Unordered: true, Owner: "orders-worker-1", ShutdownTimeout: 5 * time.Second,
			RetainDelivered: 168 * time.Hour, CleanupInterval: 10 * time.Minute,
		},
		Disabled: true,
	}

	tests := []struct {
		name    string
		env     map[string]string
		want    outboxfx.Config
		wantErr []string // every substring must appear
	}{
		{name: "nothing set keeps the defaults", env: map[string]string{}},
		{name: "empty values count as unset", env: map[string]string{"OUTBOX_BATCH_SIZE": "", "OUTBOX_LEASE": "  "}},
		{name: "every variable", env: full, want: want},
		{name: "spaces around a value", env: map[string]string{"OUTBOX_BATCH_SIZE": " 7 "}, want: outboxfx.Config{Relay: outbox.Config{BatchSize: 7}}},
		{name: "not an integer", env: map[string]string{"OUTBOX_BATCH_SIZE": "lots"}, wantErr: []string{"OUTBOX_BATCH_SIZE", `"lots" is not an integer`}},
		{name: "not a duration", env: map[string]string{"OUTBOX_POLL_INTERVAL": "5"}, wantErr: []string{"OUTBOX_POLL_INTERVAL", "not a duration"}},
		{name: "not a boolean", env: map[string]string{"OUTBOX_UNORDERED": "yes please"}, wantErr: []string{"OUTBOX_UNORDERED", "not a boolean"}},
		{name: "not a number", env: map[string]string{"OUTBOX_BACKOFF_JITTER": "NaN"}, wantErr: []string{"OUTBOX_BACKOFF_JITTER", "not a number"}},
		{
			name:    "every unparsable variable is named",
			env:     map[string]string{"OUTBOX_CONCURRENCY": "x", "OUTBOX_LEASE": "y", "OUTBOX_DISABLED": "z"},
			wantErr: []string{"OUTBOX_CONCURRENCY", "OUTBOX_LEASE", "OUTBOX_DISABLED"},
		},
		{name: "a value the relay rejects", env: map[string]string{"OUTBOX_BATCH_SIZE": "-5"}, wantErr: []string{"OUTBOX_BATCH_SIZE", "BatchSize is negative"}},
		{name: "a nested field the relay rejects", env: map[string]string{"OUTBOX_BACKOFF_JITTER": "1.5"}, wantErr: []string{"OUTBOX_BACKOFF_JITTER", "Backoff.Jitter"}},
		{
			name:    "a combination the relay rejects",
			env:     map[string]string{"OUTBOX_LEASE": "10s", "OUTBOX_PUBLISH_TIMEOUT": "10s"},
			wantErr: []string{"OUTBOX_PUBLISH_TIMEOUT", "must be below Lease"},
		},
		{name: "a lease too short to work", env: map[string]string{"OUTBOX_LEASE": "1ns"}, wantErr: []string{"OUTBOX_LEASE", "below the minimum of 100ms"}},
		{name: "a poll loop that would spin", env: map[string]string{"OUTBOX_POLL_INTERVAL": "1ns"}, wantErr: []string{"OUTBOX_POLL_INTERVAL", "below the minimum"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := outboxfx.ConfigFromLookup(lookup(tt.env))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("got %+v, want an error naming %v", got, tt.wantErr)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got.Relay.Backoff != tt.want.Relay.Backoff || got.Disabled != tt.want.Disabled {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			g, w := got.Relay, tt.want.Relay
			g.Backoff, w.Backoff = outbox.Backoff{}, outbox.Backoff{}
			if g.BatchSize != w.BatchSize || g.Concurrency != w.Concurrency || g.PollInterval != w.PollInterval ||
				g.Lease != w.Lease || g.PublishTimeout != w.PublishTimeout || g.MaxAttempts != w.MaxAttempts ||
				g.Unordered != w.Unordered || g.Owner != w.Owner || g.ShutdownTimeout != w.ShutdownTimeout ||
				g.RetainDelivered != w.RetainDelivered || g.CleanupInterval != w.CleanupInterval {
				t.Errorf("got %+v, want %+v", g, w)
			}
		})
	}
}

func TestConfigErrorIsTyped(t *testing.T) {
	_, err := outboxfx.ConfigFromLookup(lookup(map[string]string{"OUTBOX_CONCURRENCY": "5000"}))
	var ce *outbox.ConfigError
	if !errors.As(err, &ce) || ce.Field != "Concurrency" || !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Fatalf("err = %v, want a *outbox.ConfigError for Concurrency", err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("OUTBOX_BATCH_SIZE", "42")
	t.Setenv("OUTBOX_OWNER", "env-owner")
	cfg, err := outboxfx.ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Relay.BatchSize != 42 || cfg.Relay.Owner != "env-owner" {
		t.Errorf("got %+v", cfg.Relay)
	}
}

// The variable list in ConfigFromEnv's documentation is the one Settings returns, defaults and
// meaning included: the docs cannot drift from what is read. go test -run TestEnvDocs -update
// rewrites it.
func TestEnvDocs(t *testing.T) {
	src, err := os.ReadFile("env.go")
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, s := range outboxfx.Settings() {
		fmt.Fprintf(&want, "//\t%-26s %-18s %s\n", s.Env, "["+s.Default+"]", s.Doc)
	}
	lines := strings.SplitAfter(string(src), "\n")
	first, last := -1, -1
	for i, l := range lines {
		if strings.HasPrefix(l, "//\tOUTBOX_") {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		t.Fatal("env.go documents no OUTBOX_ variable")
	}
	got := strings.Join(lines[first:last+1], "")
	if got == want.String() {
		return
	}
	if *update {
		out := strings.Join(lines[:first], "") + want.String() + strings.Join(lines[last+1:], "")
		if err := os.WriteFile("env.go", []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("ConfigFromEnv's documentation lists\n%s\nbut Settings says\n%s\n(go test -run TestEnvDocs -update rewrites it)", got, want.String())
}
