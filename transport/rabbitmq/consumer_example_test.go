package rabbitmq_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// A consumer of the queue a relay publishes to. The handler usually wraps an inbox's Handle
// (store/postgres/inbox, store/sqlite/inbox, store/mongo/inbox), so that a message delivered
// twice takes effect once; a duplicate returns nil and is acknowledged like any handled message.
func ExampleNewConsumer() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c, err := rabbitmq.NewConsumer(ctx, rabbitmq.ConsumerConfig{
		Connection: rabbitmq.Connection{URL: "amqp://billing:secret@rabbit:5672/prod"},
		// A quorum queue declared with x-delivery-limit and x-dead-letter-exchange: failures
		// are requeued until the limit, then dead-lettered.
		Queue:       "billing.orders",
		Concurrency: 16, // also the prefetch
		Handler: func(ctx context.Context, m *outbox.Message) error {
			log.Printf("%s %s: %s", m.Type, m.ID, m.Payload)
			return nil // nil acknowledges the message; an error requeues it
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
