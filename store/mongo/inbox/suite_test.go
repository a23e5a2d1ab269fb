package inbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/mongo/inbox"
)

func harness(t *testing.T, client *mongo.Client, db string) outboxtest.InboxHarness {
	t.Helper()
	in, err := inbox.New(client, inbox.Config{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.EnsureSchema(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	effects := client.Database(db).Collection("effects")
	records := client.Database(db).Collection(inbox.DefaultCollection)
	return outboxtest.InboxHarness{
		Handle: func(ctx context.Context, consumer string, msg *outbox.Message, fn outboxtest.InboxFunc) (bool, error) {
			var handler func(context.Context) error
			if fn != nil {
				handler = func(ctx context.Context) error {
					return fn(ctx, func(ctx context.Context) error {
						_, err := effects.InsertOne(ctx, bson.D{{Key: "consumer", Value: consumer}, {Key: "message_id", Value: msg.ID}})
						return err
					})
				}
			}
			return in.Handle(ctx, consumer, msg, handler)
		},
		Effects: func(ctx context.Context, consumer, id string) (int, error) {
			n, err := effects.CountDocuments(ctx, bson.D{{Key: "consumer", Value: consumer}, {Key: "message_id", Value: id}})
			return int(n), err
		},
		Recorded: in.Processed,
		Age: func(ctx context.Context, consumer, id string, age time.Duration) error {
			res, err := records.UpdateOne(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "c", Value: consumer}, {Key: "m", Value: id}}}},
				mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "processed_at", Value: bson.D{{Key: "$subtract", Value: bson.A{"$$NOW", age.Milliseconds()}}}}}}}})
			if err == nil && res.MatchedCount != 1 {
				err = fmt.Errorf("no record of %s for %s", id, consumer)
			}
			return err
		},
		Prune: in.DeleteOlderThan,
	}
}

// TestInboxSuite runs the whole contract on a replica set.
func TestInboxSuite(t *testing.T) {
	uri := replicaSetURI(t)
	outboxtest.RunInboxSuite(t, func(t *testing.T) outboxtest.InboxHarness {
		client, db := connect(t, uri, "MongoDB replica set")
		return harness(t, client, db)
	}, outboxtest.InboxFeatures{Transactions: true, Concurrent: true, Retention: true})
}

// TestInboxWithoutTransactions runs what needs no transaction on FerretDB: bad input is refused
// with the same errors, and Handle refuses to work rather than write a record on its own.
func TestInboxWithoutTransactions(t *testing.T) {
	t.Run("Standalone", func(t *testing.T) { testWithoutTransactions(t, ferretURI()) })
	t.Run("FakeReplicaSet", func(t *testing.T) { testWithoutTransactions(t, ferretReplicaSetURI()) })
}

func testWithoutTransactions(t *testing.T, uri string) {
	client, db := connect(t, uri, "FerretDB (scripts/services/ferretdb start)")
	outboxtest.RunInboxSuite(t, func(t *testing.T) outboxtest.InboxHarness { return harness(t, client, db) }, outboxtest.InboxFeatures{})

	in, err := inbox.New(client, inbox.Config{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	msg := &outbox.Message{ID: "0192d6f0-0000-7000-8000-000000000001", Type: "T"}
	var ran atomic.Bool
	for range 2 { // the verdict is remembered, and stays the same
		dup, err := in.Handle(testCtx(t), "billing", msg, func(context.Context) error { ran.Store(true); return nil })
		if !errors.Is(err, inbox.ErrTransactionsUnsupported) || dup || !strings.HasPrefix(err.Error(), "mongo inbox: handle: transactions unsupported") {
			t.Fatalf("Handle without transactions: duplicate=%t, %v", dup, err)
		}
	}
	if ran.Load() {
		t.Fatal("the handler ran without a transaction")
	}
	if ok, err := in.Processed(testCtx(t), "billing", msg.ID); err != nil || ok {
		t.Fatalf("a record was written without a transaction (%t, %v)", ok, err)
	}
	for range 2 {
		if err := in.EnsureSchema(testCtx(t)); err != nil {
			t.Fatalf("EnsureSchema: %v", err)
		}
	}
	if _, err := in.DeleteOlderThan(testCtx(t), time.Hour, 0); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("DeleteOlderThan(limit 0): %v", err)
	}
}

func TestConfig(t *testing.T) {
	client, err := mongo.Connect() // no I/O until used
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	for _, c := range []struct {
		cfg   inbox.Config
		field string
	}{
		{inbox.Config{}, "Database"},
		{inbox.Config{Database: "a.b"}, "Database"},
		{inbox.Config{Database: "shop", Collection: "in$box"}, "Collection"},
	} {
		if _, err := inbox.New(client, c.cfg); !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("New(%v) = %v, want a config error naming %s", c.cfg, err, c.field)
		}
	}
	if _, err := inbox.New(nil, inbox.Config{Database: "shop"}); err == nil || !strings.Contains(err.Error(), "client is nil") {
		t.Errorf("New(nil client) = %v", err)
	}
}
