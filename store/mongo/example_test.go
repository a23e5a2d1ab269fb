package mongo_test

import (
	"context"
	"errors"
	"log"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/mongo"
)

// Execute writes the business change and its event in one transaction, like the origin
// package's executeWithOutbox; the relay publishes the event after the commit.
func ExampleExecute() {
	ctx := context.Background()
	store, err := mongo.New(ctx, mongo.Config{URI: "mongodb://127.0.0.1:27019/shop?directConnection=true"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.EnsureSchema(ctx); err != nil {
		log.Fatal(err)
	}
	orders := store.Client().Database("shop").Collection("orders")

	event, err := outbox.NewMessage("ORDER_PLACED", map[string]any{"order": "o-1", "total": 42})
	if err != nil {
		log.Fatal(err)
	}
	event.Key = "customer-7" // this customer's events are published in order
	_, err = mongo.Execute(ctx, store, func(ctx context.Context) (string, error) {
		// ctx carries the transaction's session: every write in it commits with the event.
		_, err := orders.InsertOne(ctx, bson.D{{Key: "_id", Value: "o-1"}, {Key: "total", Value: 42}})
		return "o-1", err // stored as the event's Result: "o-1"
	}, event)
	if errors.Is(err, mongo.ErrTransactionsUnsupported) {
		log.Fatal("start MongoDB as a replica set: ", err)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// Add writes events inside a transaction the service already runs.
func ExampleStore_Add() {
	ctx := context.Background()
	store, err := mongo.New(ctx, mongo.Config{URI: "mongodb://127.0.0.1:27019/shop?directConnection=true"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	orders := store.Client().Database("shop").Collection("orders")

	sess, err := store.Client().StartSession()
	if err != nil {
		log.Fatal(err)
	}
	defer sess.EndSession(ctx)
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		if _, err := orders.UpdateByID(ctx, "o-1", bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "paid"}}}}); err != nil {
			return nil, err
		}
		// Built inside the callback, so a retried transaction gets fresh IDs.
		event, err := outbox.NewMessage("ORDER_PAID", `{"order":"o-1"}`)
		if err != nil {
			return nil, err
		}
		return nil, store.Add(ctx, event)
	})
	if err != nil {
		log.Fatal(err)
	}
}
