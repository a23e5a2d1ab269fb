package kafka_test

import (
	"context"
	"crypto/tls"
	"log"
	"os"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/kafka"
)

// A relay publishing to Kafka in ordered mode, ORDER_* events to a topic of their own.
func Example() {
	ctx := context.Background()
	t, err := kafka.New(ctx, kafka.Config{
		Connection: kafka.Connection{Brokers: []string{"127.0.0.1:9092"}},
		Topic:      "events",
		Routes:     map[string]string{"ORDER_PLACED": "orders"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()

	var store outbox.Store // e.g. postgres.New(ctx, postgres.Config{...})
	relay, err := outbox.NewRelay(store, t, outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	_ = relay.Run(context.Background())
}

// SASL/SCRAM over TLS, as managed clusters expect.
func Example_saslOverTLS() {
	ctx := context.Background()
	t, err := kafka.New(ctx, kafka.Config{
		Connection: kafka.Connection{
			Brokers: []string{"broker-1.example.com:9096", "broker-2.example.com:9096"},
			SASL:    &kafka.SASL{Mechanism: kafka.SASLScramSHA512, User: "relay", Password: outbox.Secret(os.Getenv("KAFKA_PASSWORD"))},
			TLS:     &tls.Config{MinVersion: tls.VersionTLS12},
		},
		Topic: "events",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
}
