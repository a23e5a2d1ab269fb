package sqs_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/sqs"
)

// A consumer of the queue a relay publishes to. The handler usually wraps an inbox's Handle
// (store/postgres/inbox, store/sqlite/inbox, store/mongo/inbox), so that a message delivered
// twice takes effect once; a duplicate returns nil and is deleted like any handled message.
func ExampleNewConsumer() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c, err := sqs.NewConsumer(ctx, sqs.ConsumerConfig{
		Connection:  sqs.Connection{Region: "eu-west-1"},
		QueueURL:    "orders", // give the queue a redrive policy: failures are left to it
		Concurrency: 16,
		Handler: func(ctx context.Context, m *outbox.Message) error {
			log.Printf("%s %s: %s", m.Type, m.ID, m.Payload)
			return nil // nil deletes the message; an error leaves it for redelivery
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Run consumes until SIGTERM, then waits for the handlers in flight.
	if err := c.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
