package inbox

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox"
	outboxmongo "github.com/txoutbox/outbox/store/mongo"
	mongoinbox "github.com/txoutbox/outbox/store/mongo/inbox"
)

// mongoBackend runs the test on the replica set OUTBOX_TEST_MONGO_URI names, or skips: the inbox
// needs transactions, which FerretDB (the MongoDB server the test machines can run) does not
// have, and no replica set can run there.
//
// It has no consumer process to kill: a client killed mid-transaction leaves its transaction
// open on the server until transactionLifetimeLimitSeconds (60s by default) aborts it, which is
// correct (the record and the effect are never committed) but longer than this test may take.
func mongoBackend(t *testing.T) *database {
	t.Helper()
	uri := os.Getenv("OUTBOX_TEST_MONGO_URI")
	if uri == "" {
		t.Skip("OUTBOX_TEST_MONGO_URI is unset: the MongoDB inbox needs a replica set for its transactions (FerretDB has none), so the MongoDB run does not take place; see store/mongo/README.md to start one")
	}
	ctx := testCtx(t)
	db := "inbox_e2e_" + randomSuffix()
	store, err := outboxmongo.New(ctx, outboxmongo.Config{URI: outboxmongo.URI(uri), Database: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = store.Client().Database(db).Drop(ctx)
		_ = store.Close()
	})
	if err := store.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	cs, err := openMongoConsumer(ctx, uri, db+"_c")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cs.close)
	return &database{
		name: "mongo", store: store, inspect: store, consumer: cs,
		write: func(ctx context.Context, m *outbox.Message, commit bool) error {
			_, err := outboxmongo.Execute(ctx, store, func(ctx context.Context) (struct{}, error) {
				if commit {
					return struct{}{}, nil
				}
				if err := store.Add(ctx, m); err != nil {
					return struct{}{}, err
				}
				return struct{}{}, errRollback
			}, commitOnly(m, commit)...)
			return err
		},
	}
}

// openMongoConsumer connects the consumer's own client, inbox and effects collection in db,
// dropped when it closes.
func openMongoConsumer(ctx context.Context, uri, db string) (consumerSide, error) {
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return consumerSide{}, err
	}
	in, err := mongoinbox.New(client, mongoinbox.Config{Database: db})
	if err == nil {
		err = in.EnsureSchema(ctx)
	}
	effects := client.Database(db).Collection("effects")
	if err == nil {
		// Created up front: a collection created implicitly inside concurrent transactions
		// conflicts more than it needs to.
		err = client.Database(db).CreateCollection(ctx, "effects")
	}
	if err != nil {
		_ = client.Disconnect(context.Background())
		return consumerSide{}, err
	}
	return consumerSide{
		handle: func(ctx context.Context, consumer string, m *outbox.Message, hook func(context.Context) error) (bool, error) {
			return in.Handle(ctx, consumer, m, func(ctx context.Context) error {
				n, err := payloadN(m)
				if err != nil {
					return err
				}
				if _, err := effects.InsertOne(ctx, bson.D{{Key: "message_id", Value: m.ID}, {Key: "n", Value: n}}); err != nil {
					return err
				}
				return hook(ctx)
			})
		},
		effects: func(ctx context.Context) (map[string]int, error) {
			cur, err := effects.Find(ctx, bson.D{})
			if err != nil {
				return nil, err
			}
			var rows []struct {
				MessageID string `bson:"message_id"`
			}
			if err := cur.All(ctx, &rows); err != nil {
				return nil, err
			}
			out := map[string]int{}
			for _, r := range rows {
				out[r.MessageID]++
			}
			return out, nil
		},
		close: func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := client.Database(db).Drop(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "drop consumer database:", err)
			}
			_ = client.Disconnect(ctx)
		},
	}, nil
}
