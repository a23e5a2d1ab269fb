package nats_test

import (
	"context"
	"log"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// A relay publishing to JetStream in ordered mode: events.<Type> subjects, a stream that
// captures them with a duplicate window longer than the relay's retry horizon, and each Key's
// consecutive messages in one Publish call.
func Example() {
	ctx := context.Background()
	t, err := outboxnats.New(ctx, outboxnats.Config{
		Connection:   outboxnats.Connection{URL: "nats://127.0.0.1:4222", CredsFile: "/etc/outbox/relay.creds"},
		Subject:      "events.{type}",
		Stream:       "EVENTS", // fail, rather than land in another stream
		KeepKeyOrder: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()

	// The stream is the deployment's; shown here for its duplicate window.
	js, err := jetstream.New(t.Conn())
	if err != nil {
		log.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "EVENTS", Subjects: []string{"events.>"}, Storage: jetstream.FileStorage,
		Duplicates: 10 * time.Minute, // above the relay's Backoff.Max (5m) + Lease (30s)
	}); err != nil {
		log.Fatal(err)
	}

	var store outbox.Store // e.g. postgres.New(ctx, postgres.Config{...})
	relay, err := outbox.NewRelay(store, t, outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	_ = relay.Run(ctx)
}

// A connection of your own (shared with the rest of the service), and routes by Type.
func Example_ownConnection() {
	nc, err := natsgo.Connect("nats://127.0.0.1:4222", natsgo.Name("orders-service"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	t, err := outboxnats.New(context.Background(), outboxnats.Config{
		Connection: outboxnats.Connection{Conn: nc},
		Subject:    "outbox.{type}",
		Routes:     map[string]string{"ORDER_PLACED": "orders.placed"},
		Route: func(m *outbox.Message) string {
			if m.Headers["tenant"] == "internal" {
				return "internal.events"
			}
			return "" // the template
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
}
