package inbox_test

import (
	"context"
	"encoding/json"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/store/postgres/inbox"
)

// A saga step: the inventory service consumes ORDER_PLACED, reserves stock and emits
// STOCK_RESERVED. The inbox record, the stock change and the new event commit in one
// transaction, so a redelivered ORDER_PLACED changes nothing and emits nothing twice.
func Example_chaining() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@localhost:5432/inventory")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(ctx, postgres.Config{Pool: pool})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	in, err := inbox.New(pool, inbox.Config{})
	if err != nil {
		log.Fatal(err)
	}

	// What a consumer (sqs.NewConsumer, memory.NewConsumer) calls for each delivery.
	handle := func(ctx context.Context, msg *outbox.Message) error {
		_, err := in.Handle(ctx, "inventory", msg, func(ctx context.Context, tx pgx.Tx) error {
			var order struct {
				SKU string `json:"sku"`
				Qty int    `json:"qty"`
			}
			if err := json.Unmarshal(msg.Payload, &order); err != nil {
				return outbox.Permanent(err)
			}
			if _, err := tx.Exec(ctx, "UPDATE stock SET reserved = reserved + $1 WHERE sku = $2", order.Qty, order.SKU); err != nil {
				return err
			}
			event, err := outbox.NewMessage("STOCK_RESERVED", map[string]any{"order": msg.ID, "sku": order.SKU, "qty": order.Qty})
			if err != nil {
				return err
			}
			event.Key = order.SKU
			return store.Add(ctx, tx, event) // same tx: emitted only if this step commits
		})
		return err // a duplicate is nil: acknowledge it
	}
	_ = handle
}
