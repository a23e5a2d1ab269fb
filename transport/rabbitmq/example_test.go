package rabbitmq_test

import (
	"context"
	"log"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// A relay publishing to a topic exchange, each event under a routing key made of its type and
// key, in ordered mode with the transport keeping each key's order within a batch.
func Example() {
	t, err := rabbitmq.New(context.Background(), rabbitmq.Config{
		Connection:   rabbitmq.Connection{URL: "amqp://outbox:secret@127.0.0.1:5672/"},
		Exchange:     "events", // declared by the service, e.g. a durable topic exchange
		RoutingKey:   "{type}.{key}",
		KeepKeyOrder: true,
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

// Routing per message: ORDER_* events to their own exchange, the rest to a queue through the
// default exchange.
func Example_route() {
	t, err := rabbitmq.New(context.Background(), rabbitmq.Config{
		Connection: rabbitmq.Connection{URL: "amqps://outbox:secret@rabbit.internal:5671/prod", CAFile: "/etc/outbox/rabbit-ca.pem"},
		Route: func(m *outbox.Message) (exchange, routingKey string) {
			if m.Type == "ORDER_PLACED" || m.Type == "ORDER_CANCELLED" {
				return "orders", m.Type
			}
			return "", "events" // the default exchange delivers to the queue named events
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
}
