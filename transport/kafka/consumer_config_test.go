package kafka_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/kafka"
)

func TestConsumerConfigValidate(t *testing.T) {
	ok := kafka.ConsumerConfig{Connection: kafka.Connection{Brokers: []string{"127.0.0.1:9092"}}, Topics: []string{"events"}, Group: "billing",
		Handler: func(context.Context, *outbox.Message) error { return nil }}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		field string
		edit  func(*kafka.ConsumerConfig)
	}{
		{"Brokers", func(c *kafka.ConsumerConfig) { c.Brokers = nil }},
		{"Brokers[0]", func(c *kafka.ConsumerConfig) { c.Brokers = []string{"user:pw@host:1"} }},
		{"Handler", func(c *kafka.ConsumerConfig) { c.Handler = nil }},
		{"Topics", func(c *kafka.ConsumerConfig) { c.Topics = nil }},
		{"Topics[1]", func(c *kafka.ConsumerConfig) { c.Topics = []string{"a", "b c"} }},
		{"Group", func(c *kafka.ConsumerConfig) { c.Group = "" }},
		{"SASL.Password", func(c *kafka.ConsumerConfig) { c.SASL = &kafka.SASL{Mechanism: kafka.SASLPlain, User: "u"} }},
		{"Concurrency", func(c *kafka.ConsumerConfig) { c.Concurrency = -1 }},
		{"Concurrency", func(c *kafka.ConsumerConfig) { c.Concurrency = kafka.MaxConsumerConcurrency + 1 }},
		{"MaxPollRecords", func(c *kafka.ConsumerConfig) { c.MaxPollRecords = -1 }},
		{"RetryBackoff", func(c *kafka.ConsumerConfig) { c.RetryBackoff = -1 }},
		{"MaxRetryBackoff", func(c *kafka.ConsumerConfig) { c.RetryBackoff, c.MaxRetryBackoff = time.Second, time.Millisecond }},
		{"FetchMaxWait", func(c *kafka.ConsumerConfig) { c.FetchMaxWait = -1 }},
		{"HandlerTimeout", func(c *kafka.ConsumerConfig) { c.HandlerTimeout = -1 }},
	} {
		cfg := ok
		tc.edit(&cfg)
		err := cfg.Validate()
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: Validate() = %v, want a ConfigError on %s", tc.field, err, tc.field)
		}
		if _, err := kafka.NewConsumer(context.Background(), cfg); err == nil {
			t.Errorf("%s: NewConsumer accepted an invalid config", tc.field)
		}
	}
}

func TestConsumerConfigHidesSecrets(t *testing.T) {
	cfg := kafka.ConsumerConfig{Connection: kafka.Connection{Brokers: []string{"127.0.0.1:9092"}, SASL: &kafka.SASL{Mechanism: kafka.SASLScramSHA256, User: "u", Password: "hunter2-secret"}}, Topics: []string{"events"}, Group: "g"}
	cfg.TLS = &tls.Config{ServerName: "broker.internal"}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), "broker.internal") {
		t.Errorf("the TLS configuration is marshalled: %s", js)
	}
	for _, s := range []string{fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v", cfg), string(js)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("secret shown: %s", s)
		}
	}
	bad := cfg
	bad.Brokers = []string{"u:hunter2-secret@127.0.0.1:9092"}
	badJS, _ := json.Marshal(bad)
	if err := bad.Validate(); err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(fmt.Sprintf("%+v", bad), "hunter2") || strings.Contains(string(badJS), "hunter2") {
		t.Errorf("broker credentials: %v / %s / %s", err, fmt.Sprintf("%+v", bad), badJS)
	}
}

// Start fails, as an outage, when no broker answers within its context.
func TestConsumerStartUnreachable(t *testing.T) {
	cons, err := kafka.NewConsumer(context.Background(), kafka.ConsumerConfig{
		Connection: kafka.Connection{Brokers: []string{"127.0.0.1:1"}, DialTimeout: 200 * time.Millisecond}, Topics: []string{"t"}, Group: "g",
		Handler: func(context.Context, *outbox.Message) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := cons.Start(ctx); !outbox.IsUnavailable(err) {
		t.Errorf("start = %v, want an outage", err)
	}
	if err := cons.Stop(context.Background()); err != nil {
		t.Errorf("stop of a consumer that never started: %v", err)
	}
}

// produceRaw writes records to partition 0 of topic as they are, bypassing the transport.
func produceRaw(t *testing.T, c *cluster, topic string, records ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, r := range records {
		r.Partition = 0
		if err := cl.ProduceSync(testCtx(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}
