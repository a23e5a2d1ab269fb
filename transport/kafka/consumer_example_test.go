package kafka_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/kafka"
)

// A consumer group reading the topic a relay publishes to. The records of one partition reach
// the handler in order; an error stops that partition (its later records wait) and, after a
// backoff, the failed record is fetched again. The handler usually wraps an inbox's Handle
// (store/postgres/inbox, store/sqlite/inbox, store/mongo/inbox), since records arrive again
// after a rebalance or a failed commit; a duplicate returns nil and is committed past.
func ExampleNewConsumer() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c, err := kafka.NewConsumer(ctx, kafka.ConsumerConfig{
		Connection:  kafka.Connection{Brokers: []string{"127.0.0.1:9092"}},
		Topics:      []string{"orders"},
		Group:       "billing",
		Concurrency: 8, // partitions handled at once
		Handler: func(ctx context.Context, m *outbox.Message) error {
			log.Printf("%s %s (key %s): %s", m.Type, m.ID, m.Key, m.Payload)
			return nil // nil commits past the record; an error rewinds its partition to it
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Run consumes until SIGTERM, then waits for the handlers in flight and commits.
	if err := c.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
