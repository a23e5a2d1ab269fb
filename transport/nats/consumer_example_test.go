package nats_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// A consumer of the stream a relay publishes to. The durable pull consumer is the
// deployment's, like the stream: explicit acks, an AckWait, and a MaxDeliver so a message that
// always fails stops coming back (the server then publishes a MAX_DELIVERIES advisory naming
// it). The handler usually wraps an inbox's Handle (store/postgres/inbox, store/sqlite/inbox,
// store/mongo/inbox), so that a message delivered twice takes effect once.
func ExampleNewConsumer() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	nc, err := natsgo.Connect("nats://127.0.0.1:4222")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "EVENTS", jetstream.ConsumerConfig{
		Durable:    "billing",
		AckPolicy:  jetstream.AckExplicitPolicy,
		AckWait:    30 * time.Second,
		MaxDeliver: 5,
	}); err != nil {
		log.Fatal(err)
	}

	c, err := outboxnats.NewConsumer(ctx, outboxnats.ConsumerConfig{
		Connection:  outboxnats.Connection{Conn: nc},
		Stream:      "EVENTS",
		Durable:     "billing",
		Concurrency: 16,
		Handler: func(ctx context.Context, m *outbox.Message) error {
			log.Printf("%s %s: %s", m.Type, m.ID, m.Payload)
			return nil // nil acks the message; an error naks it for redelivery
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
