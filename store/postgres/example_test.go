package postgres_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/transport/memory"
)

// Execute is the origin package's executeWithOutbox: the business change and its event commit
// together, and the event carries the function's result.
func ExampleExecute() {
	ctx := context.Background()
	store, err := postgres.New(ctx, postgres.Config{URL: "postgres://app@localhost:5432/shop"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.EnsureSchema(ctx); err != nil {
		log.Fatal(err)
	}

	event, err := outbox.NewMessage("ORDER_PLACED", map[string]any{"customer": "c-42", "total": "129.90"})
	if err != nil {
		log.Fatal(err)
	}
	event.Key = "c-42" // the customer's events are published in order
	orderID, err := postgres.Execute(ctx, store, func(ctx context.Context, tx pgx.Tx) (int64, error) {
		var id int64
		err := tx.QueryRow(ctx, "INSERT INTO orders (customer, total) VALUES ($1, $2) RETURNING id", "c-42", "129.90").Scan(&id)
		return id, err
	}, event)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("order", orderID)

	// A relay (usually in its own process) publishes what was committed.
	relay, err := outbox.NewRelay(store, memory.New(), outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	_ = relay.Run(ctx)
}

// SchemaSQL gives the DDL to migration tools instead of running EnsureSchema at startup.
func ExampleSchemaSQL() {
	ddl, err := postgres.SchemaSQL("billing", "outbox")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.SplitN(ddl, "\n", 3)[1])
	// Output: CREATE TABLE IF NOT EXISTS "billing"."outbox" (
}
