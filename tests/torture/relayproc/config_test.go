package main

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

func TestParseFlags(t *testing.T) {
	base := []string{"-schema", "s", "-queue-url", "http://127.0.0.1:4566/000000000000/q"}
	tests := []struct {
		name  string
		extra []string
		field string // the ConfigError field expected; "" for success
	}{
		{"minimal", nil, ""},
		{"every knob", []string{"-ordered", "-lease", "2s", "-batch-size", "10", "-concurrency", "3", "-partial-failure-rate", "0.2", "-call-failure-rate", "0.05", "-log-level", "error",
			"-publish-timeout", "2s", "-max-attempts", "3", "-backoff-initial", "100ms", "-backoff-max", "500ms"}, ""},
		{"WAL mode", []string{"-postgres-mode", "wal", "-wal-status-interval", "100ms", "-wal-takeover-interval", "1s", "-wal-heartbeat-interval", "3s"}, ""},
		{"unknown mode", []string{"-postgres-mode", "logical"}, "postgres-mode"},
		{"MySQL store", []string{"-store", "mysql", "-mysql-url", "mysql://u:p@127.0.0.1:3306/d", "-mysql-table", "t"}, ""},
		{"unknown store", []string{"-store", "oracle"}, "store"},
		{"WAL mode on MySQL", []string{"-store", "mysql", "-postgres-mode", "wal"}, "postgres-mode"},
		{"negative status interval", []string{"-wal-status-interval", "-1ms"}, "wal-status-interval"},
		{"negative takeover interval", []string{"-wal-takeover-interval", "-1ms"}, "wal-takeover-interval"},
		{"negative heartbeat interval", []string{"-wal-heartbeat-interval", "-1ms"}, "wal-heartbeat-interval"},
		{"negative publish delay", []string{"-publish-delay", "-1ms"}, "publish-delay"},
		{"negative publish timeout", []string{"-publish-timeout", "-1s"}, "publish-timeout"},
		{"negative attempts", []string{"-max-attempts", "-1"}, "max-attempts"},
		{"negative backoff", []string{"-backoff-initial", "-1ms"}, "backoff-initial"},
		{"negative backoff cap", []string{"-backoff-max", "-1ms"}, "backoff-max"},
		{"negative lease", []string{"-lease", "-1s"}, "lease"},
		{"negative batch", []string{"-batch-size", "-1"}, "batch-size"},
		{"negative concurrency", []string{"-concurrency", "-2"}, "concurrency"},
		{"negative poll", []string{"-poll-interval", "-1ms"}, "poll-interval"},
		{"negative size", []string{"-max-message-bytes", "-5"}, "max-message-bytes"},
		{"rate of one", []string{"-partial-failure-rate", "1"}, "partial-failure-rate"},
		{"negative rate", []string{"-call-failure-rate", "-0.1"}, "call-failure-rate"},
		{"endpoint not a URL", []string{"-endpoint", "127.0.0.1:4566"}, "endpoint"},
		{"unknown level", []string{"-log-level", "loud"}, "log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseFlags(append(append([]string(nil), base...), tt.extra...), io.Discard)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("parseFlags: %v", err)
				}
				return
			}
			var ce *outbox.ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("parseFlags = %+v, %v; want a ConfigError naming %s", cfg, err, tt.field)
			}
		})
	}
}

func TestParseFlagsRequired(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		field string
	}{
		{[]string{"-queue-url", "http://h/q"}, "schema"},
		{[]string{"-schema", "s"}, "queue-url"},
		{[]string{"-schema", "s", "-queue-url", "q"}, "queue-url"},
		{[]string{"-schema", "s", "-transport", "kafka"}, "transport"},
		{[]string{"-schema", "s", "-transport", "nats"}, "nats-subject"},
		{[]string{"-schema", "s", "-transport", "rabbitmq", "-rabbitmq-queue", "q"}, "rabbitmq-url"},
		{[]string{"-schema", "s", "-transport", "rabbitmq", "-rabbitmq-url", "amqp://h/"}, "rabbitmq-queue"},
	} {
		_, err := parseFlags(tt.args, io.Discard)
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field {
			t.Errorf("parseFlags(%q) = %v; want a ConfigError naming %s", tt.args, err, tt.field)
		}
	}
	// The brokers other than SQS need no queue URL, and the MySQL store no schema.
	for _, args := range [][]string{
		{"-store", "mysql", "-queue-url", "http://h/q"},
		{"-schema", "s", "-transport", "nats", "-nats-subject", "s.{type}"},
		{"-schema", "s", "-transport", "rabbitmq", "-rabbitmq-url", "amqp://h/", "-rabbitmq-queue", "q"},
	} {
		if _, err := parseFlags(args, io.Discard); err != nil {
			t.Errorf("parseFlags(%q): %v", args, err)
		}
	}
	if _, err := parseFlags([]string{"-schema", "s", "-queue-url", "http://h/q", "extra"}, io.Discard); err == nil || !strings.Contains(err.Error(), "unexpected arguments") {
		t.Errorf("stray argument accepted: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	t.Setenv("OUTBOX_TEST_POSTGRES_URL", "")
	t.Setenv("OUTBOX_TEST_SQS_ENDPOINT", "")
	t.Setenv("OUTBOX_TEST_NATS_URL", "")
	t.Setenv("OUTBOX_TEST_MYSQL_URL", "")
	c := Config{Schema: "s", QueueURL: "http://h/q"}.withDefaults()
	if c.PostgresURL != "postgres://root@127.0.0.1:5432/test" || c.Endpoint != "http://127.0.0.1:4566" ||
		c.Transport != "sqs" || c.NATSURL != "nats://127.0.0.1:4222" ||
		c.Lease != 3*time.Second || c.BatchSize != 50 || c.Concurrency != 2 || c.PollInterval != 250*time.Millisecond ||
		c.MaxMessageBytes != 16<<10 || c.BackoffInitial != 250*time.Millisecond || c.BackoffMax != 4*time.Second ||
		c.PublishTimeout != 0 || c.MaxAttempts != 0 || c.Owner == "" || c.FaultSeed == 0 || c.LogLevel != "warn" ||
		c.PostgresMode != "table" || c.WALStatusInterval != 200*time.Millisecond || c.WALTakeoverInterval != 500*time.Millisecond || c.WALHeartbeatInterval != 2*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	if c.Store != "postgres" || c.MySQLURL != "mysql://outbox:outbox@127.0.0.1:3306/outbox_test" || c.MySQLTable != "outbox" {
		t.Errorf("MySQL defaults: store %q, URL %q, table %q", c.Store, c.MySQLURL, c.MySQLTable)
	}
}
