package rabbitmq_test

import (
	"testing"
	"time"

	"github.com/txoutbox/outbox/envconfig"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

func TestSettings(t *testing.T) {
	env := map[string]string{
		"OUTBOX_RABBITMQ_URL": "amqps://u:p@rabbit/prod", "OUTBOX_RABBITMQ_EXCHANGE": "events", "OUTBOX_RABBITMQ_ROUTING_KEY": "ev.{type}",
		"OUTBOX_RABBITMQ_RAW_PAYLOAD": "true", "OUTBOX_RABBITMQ_MAX_MESSAGE_BYTES": "1024", "OUTBOX_RABBITMQ_KEEP_KEY_ORDER": "1",
		"OUTBOX_RABBITMQ_CA_FILE": "ca.pem", "OUTBOX_RABBITMQ_CERT_FILE": "c.pem", "OUTBOX_RABBITMQ_KEY_FILE": "k.pem",
		"OUTBOX_RABBITMQ_KEY_PASSWORD": "kp", "OUTBOX_RABBITMQ_DIAL_TIMEOUT": "3s", "OUTBOX_RABBITMQ_HEARTBEAT": "5s",
		"OUTBOX_RABBITMQ_RECONNECT_MIN": "10ms", "OUTBOX_RABBITMQ_RECONNECT_MAX": "2s", "OUTBOX_RABBITMQ_CONNECTION_NAME": "svc",
	}
	var cfg rabbitmq.Config
	if err := envconfig.LoadSettings(&cfg, rabbitmq.Settings(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	want := rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqps://u:p@rabbit/prod", CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", KeyPassword: "kp", DialTimeout: 3 * time.Second, Heartbeat: 5 * time.Second, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 2 * time.Second, ConnectionName: "svc"},
		Exchange:        "events",
		RoutingKey:      "ev.{type}",
		RawPayload:      true,
		MaxMessageBytes: 1024,
		KeepKeyOrder:    true}
	if cfg.URL != want.URL || cfg.Exchange != want.Exchange || cfg.RoutingKey != want.RoutingKey || cfg.RawPayload != want.RawPayload ||
		cfg.MaxMessageBytes != want.MaxMessageBytes || cfg.KeepKeyOrder != want.KeepKeyOrder || cfg.CAFile != want.CAFile ||
		cfg.CertFile != want.CertFile || cfg.KeyFile != want.KeyFile || cfg.KeyPassword != want.KeyPassword ||
		cfg.DialTimeout != want.DialTimeout || cfg.Heartbeat != want.Heartbeat || cfg.ReconnectMin != want.ReconnectMin ||
		cfg.ReconnectMax != want.ReconnectMax || cfg.ConnectionName != want.ConnectionName {
		t.Errorf("loaded %#v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if s, ok := envconfig.SettingFor(rabbitmq.Settings(), rabbitmq.Config{}.Validate()); !ok || s.Env != "OUTBOX_RABBITMQ_URL" {
		t.Errorf("an empty URL maps to %+v, %t", s, ok)
	}
	for _, s := range rabbitmq.Settings() {
		if (s.Kind == envconfig.KindSecret) != (s.Field == "KeyPassword") {
			t.Errorf("%s: kind %s", s.Env, s.Kind)
		}
	}
}
