package nats_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox/envconfig"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

func TestSettings(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"OUTBOX_NATS_URL": "tls://10.0.0.1:4222,tls://10.0.0.2:4222", "OUTBOX_NATS_USER": "relay", "OUTBOX_NATS_PASSWORD": "pw",
		"OUTBOX_NATS_CA_FILE": "ca.pem", "OUTBOX_NATS_CERT_FILE": "c.pem", "OUTBOX_NATS_KEY_FILE": "k.pem",
		"OUTBOX_NATS_NAME": "orders-relay", "OUTBOX_NATS_CONNECT_TIMEOUT": "3s", "OUTBOX_NATS_RECONNECT_WAIT": "500ms",
		"OUTBOX_NATS_SUBJECT": "events.{type}", "OUTBOX_NATS_STREAM": "EVENTS", "OUTBOX_NATS_RAW_PAYLOAD": "true",
		"OUTBOX_NATS_MAX_MESSAGE_BYTES": "65536", "OUTBOX_NATS_MAX_PENDING": "256", "OUTBOX_NATS_ACK_TIMEOUT": "2s",
		"OUTBOX_NATS_KEEP_KEY_ORDER": "true",
	}
	var cfg outboxnats.Config
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := envconfig.LoadSettings(&cfg, outboxnats.Settings(), lookup); err != nil {
		t.Fatal(err)
	}
	want := outboxnats.Config{
		Connection:      outboxnats.Connection{URL: "tls://10.0.0.1:4222,tls://10.0.0.2:4222", User: "relay", Password: "pw", CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", Name: "orders-relay", ConnectTimeout: 3 * time.Second, ReconnectWait: 500 * time.Millisecond},
		Subject:         "events.{type}",
		Stream:          "EVENTS",
		RawPayload:      true,
		MaxMessageBytes: 65536,
		MaxPending:      256,
		AckTimeout:      2 * time.Second,
		KeepKeyOrder:    true,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("loaded %+v\nwant   %+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	// The other credentials load too; every credential is a secret (never a flag).
	for _, s := range outboxnats.Settings() {
		secret := s.Kind == envconfig.KindSecret
		if want := strings.Contains("Password Token NKeySeed Credentials", s.Field); secret != want {
			t.Errorf("%s: secret %t, want %t", s.Env, secret, want)
		}
		if !strings.HasPrefix(s.Env, "OUTBOX_NATS_") || s.Doc == "" || s.Default == "" {
			t.Errorf("%s: malformed setting %+v", s.Env, s)
		}
	}
	var tok outboxnats.Config
	if err := envconfig.LoadSettings(&tok, outboxnats.Settings(), func(k string) (string, bool) {
		v, ok := map[string]string{"OUTBOX_NATS_TOKEN": "t", "OUTBOX_NATS_NKEY_SEED": "s", "OUTBOX_NATS_CREDENTIALS": "c", "OUTBOX_NATS_CREDS_FILE": "f"}[k]
		return v, ok
	}); err != nil || tok.Token != "t" || tok.NKeySeed != "s" || tok.Credentials != "c" || tok.CredsFile != "f" {
		t.Errorf("credentials loaded as %v (err %v)", tok, err)
	}

	// A validation error maps back to its variable.
	if s, ok := envconfig.SettingFor(outboxnats.Settings(), outboxnats.Config{MaxPending: -1}.Validate()); !ok || s.Env != "OUTBOX_NATS_MAX_PENDING" {
		t.Errorf("a negative MaxPending maps to %+v, %t", s, ok)
	}
	if err := envconfig.LoadSettings(&cfg, outboxnats.Settings(), func(k string) (string, bool) {
		return "soon", k == "OUTBOX_NATS_ACK_TIMEOUT"
	}); err == nil || !strings.Contains(err.Error(), "OUTBOX_NATS_ACK_TIMEOUT") {
		t.Errorf("a bad duration = %v, want an error naming the variable", err)
	}
}
