package inbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/store/postgres/inbox"
)

// TestChaining is the saga step of Example_chaining against a real server: consuming a message
// changes state and emits an event in one transaction; a redelivery does neither again, and a
// step that fails after emitting leaves no event behind.
func TestChaining(t *testing.T) {
	pool := testPool(t)
	schema := newSchema(t, pool)
	ctx := context.Background()
	store, err := postgres.New(ctx, postgres.Config{Pool: pool, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := inbox.New(pool, inbox.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	stock := pgx.Identifier{schema, "stock"}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+stock+" (sku text PRIMARY KEY, reserved int NOT NULL); INSERT INTO "+stock+" VALUES ('sku-1', 0)"); err != nil {
		t.Fatal(err)
	}

	failAfterEmit := false
	step := func(msg *outbox.Message) (bool, error) {
		return in.Handle(ctx, "inventory", msg, func(ctx context.Context, tx pgx.Tx) error {
			var order struct{ Qty int }
			if err := json.Unmarshal(msg.Payload, &order); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE "+stock+" SET reserved = reserved + $1 WHERE sku = 'sku-1'", order.Qty); err != nil {
				return err
			}
			event, err := outbox.NewMessage("STOCK_RESERVED", map[string]any{"order": msg.ID})
			if err != nil {
				return err
			}
			if err := store.Add(ctx, tx, event); err != nil {
				return err
			}
			if failAfterEmit {
				return errors.New("step failed after emitting")
			}
			return nil
		})
	}
	state := func() (reserved, events int) {
		t.Helper()
		if err := pool.QueryRow(ctx, "SELECT reserved FROM "+stock).Scan(&reserved); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "outbox"}.Sanitize()).Scan(&events); err != nil {
			t.Fatal(err)
		}
		return reserved, events
	}

	placed := []*outbox.Message{{Type: "ORDER_PLACED", Payload: json.RawMessage(`{"qty":3}`)}, {Type: "ORDER_PLACED", Payload: json.RawMessage(`{"qty":4}`)}}
	if err := backend.Prepare(ctx, placed, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*outbox.Message{placed[0], placed[0].Clone(), placed[0]} {
		if _, err := step(m); err != nil {
			t.Fatal(err)
		}
	}
	if r, e := state(); r != 3 || e != 1 {
		t.Fatalf("after three deliveries of one order: reserved %d, events %d; want 3 and 1", r, e)
	}

	failAfterEmit = true
	if _, err := step(placed[1]); err == nil {
		t.Fatal("the failing step succeeded")
	}
	if r, e := state(); r != 3 || e != 1 {
		t.Fatalf("after a failed step: reserved %d, events %d; the step's change and event must roll back", r, e)
	}
	failAfterEmit = false
	if dup, err := step(placed[1]); err != nil || dup {
		t.Fatalf("redelivery after the failure: duplicate=%t, %v", dup, err)
	}
	if r, e := state(); r != 7 || e != 2 {
		t.Fatalf("after the redelivery: reserved %d, events %d; want 7 and 2", r, e)
	}
}
