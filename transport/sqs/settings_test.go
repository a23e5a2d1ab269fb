package sqs_test

import (
	"testing"

	"github.com/txoutbox/outbox/envconfig"
	"github.com/txoutbox/outbox/transport/sqs"
)

func TestSettings(t *testing.T) {
	env := map[string]string{
		"OUTBOX_SQS_QUEUE_URL": "orders.fifo", "OUTBOX_SQS_REGION": "local", "OUTBOX_SQS_ENDPOINT": "http://127.0.0.1:4566",
		"OUTBOX_SQS_DEFAULT_GROUP": "g", "OUTBOX_SQS_RAW_PAYLOAD": "true", "OUTBOX_SQS_CONCURRENCY": "3",
		"OUTBOX_SQS_ACCESS_KEY_ID": "AK", "OUTBOX_SQS_SECRET_ACCESS_KEY": "SK", "OUTBOX_SQS_SESSION_TOKEN": "ST",
	}
	var cfg sqs.Config
	if err := envconfig.LoadSettings(&cfg, sqs.Settings(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	want := sqs.Config{Connection: sqs.Connection{Region: "local", Endpoint: "http://127.0.0.1:4566", AccessKeyID: "AK", SecretAccessKey: "SK", SessionToken: "ST"},
		QueueURL:       "orders.fifo",
		DefaultGroupID: "g",
		RawPayload:     true,
		Concurrency:    3}
	if cfg.QueueURL != want.QueueURL || cfg.Region != want.Region || cfg.Endpoint != want.Endpoint || cfg.DefaultGroupID != want.DefaultGroupID ||
		cfg.RawPayload != want.RawPayload || cfg.Concurrency != want.Concurrency || cfg.AccessKeyID != want.AccessKeyID ||
		cfg.SecretAccessKey != want.SecretAccessKey || cfg.SessionToken != want.SessionToken {
		t.Errorf("loaded %#v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if s, ok := envconfig.SettingFor(sqs.Settings(), sqs.Config{}.Validate()); !ok || s.Env != "OUTBOX_SQS_QUEUE_URL" {
		t.Errorf("an empty QueueURL maps to %+v, %t", s, ok)
	}
}
