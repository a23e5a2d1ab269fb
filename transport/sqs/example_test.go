package sqs_test

import (
	"context"
	"log"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/sqs"
)

// A relay publishing to an SQS FIFO queue with the default AWS credential chain, sending
// ORDER_* events to their own queue by name.
func Example() {
	ctx := context.Background()
	t, err := sqs.New(ctx, sqs.Config{
		Connection: sqs.Connection{Region: "eu-west-1"},
		QueueURL:   "https://sqs.eu-west-1.amazonaws.com/123456789012/events.fifo",
		Routes:     map[string]string{"ORDER_PLACED": "orders.fifo"},
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
	_ = relay.Run(ctx)
}

// The origin package's explicit settings, against a local SQS emulator.
func Example_explicitCredentials() {
	t, err := sqs.New(context.Background(), sqs.Config{
		Connection: sqs.Connection{Region: "us-east-1", AccessKeyID: "test", SecretAccessKey: "test", Endpoint: "http://127.0.0.1:4566"},
		QueueURL:   "http://127.0.0.1:4566/000000000000/orders",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
}
