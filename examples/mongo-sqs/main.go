// Command mongo-sqs is the origin package's MongoDB usage example in Go: create the outbox
// indexes, insert users and their USER_CREATED events in one transaction each with Execute (the
// origin's executeWithOutbox), and run a relay that publishes the events to SQS.
//
//	OUTBOX_MONGO_URI='mongodb://127.0.0.1:27017/app?replicaSet=rs0' \
//	OUTBOX_SQS_QUEUE_URL=users OUTBOX_SQS_ENDPOINT=http://127.0.0.1:4566 OUTBOX_SQS_REGION=us-east-1 \
//	OUTBOX_SQS_ACCESS_KEY_ID=test OUTBOX_SQS_SECRET_ACCESS_KEY=test \
//	go run ./examples/mongo-sqs
//
// MongoDB runs multi-document transactions only on a replica set or a sharded cluster (one node
// started with --replSet is enough). On a standalone server the store refuses to write rather
// than store events outside the business transaction, and this example says so and exits 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/mongo"
	"github.com/txoutbox/outbox/transport/sqs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Getenv, os.Stdout)
	if err == nil {
		return
	}
	// One line, whatever the driver's error text holds, so it reads well in any log.
	fmt.Fprintln(os.Stderr, "mongo-sqs:", strings.Join(strings.Fields(err.Error()), " "))
	if isMissing(err) {
		os.Exit(2)
	}
	os.Exit(1)
}

// User is the business document; Execute stores it, as JSON, as its event's result.
type User struct {
	ID    string `json:"id" bson:"-"`
	Name  string `json:"name" bson:"name"`
	Email string `json:"email" bson:"email"`
}

func run(ctx context.Context, getenv func(string) string, w io.Writer) (err error) {
	cfg, err := configFromEnv(getenv)
	if err != nil {
		return err
	}
	// new OutboxService({ db: mongodb, ... }) and ensureOutboxTable().
	store, err := mongo.New(ctx, mongo.Config{URI: mongo.URI(cfg.MongoURI), Database: cfg.Database})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, store.Close()) }() // the origin's close()
	if err := store.EnsureSchema(ctx); err != nil {
		return err
	}
	users := store.Collection().Database().Collection("users")

	// executeWithOutbox(users, insert, payload, 'USER_CREATED'), three times.
	var ids []string
	for _, name := range []string{"ada", "grace", "edsger"} {
		event, err := outbox.NewMessage("USER_CREATED", map[string]string{"name": name})
		if err != nil {
			return err
		}
		// The insert uses Execute's ctx, which carries the transaction's session.
		user, err := mongo.Execute(ctx, store, func(ctx context.Context) (User, error) {
			u := User{Name: name, Email: name + "@example.com"}
			res, err := users.InsertOne(ctx, u)
			if err != nil {
				return u, err
			}
			if oid, ok := res.InsertedID.(bson.ObjectID); ok {
				u.ID = oid.Hex()
			}
			return u, nil
		}, event)
		if err != nil {
			return err
		}
		ids = append(ids, event.ID)
		_, _ = fmt.Fprintf(w, "user %s (%s) and event %s committed together\n", user.ID, user.Name, event.ID)
	}

	transport, err := sqs.New(ctx, sqs.Config{
		Connection: sqs.Connection{Region: cfg.Region, Endpoint: cfg.Endpoint, AccessKeyID: outbox.Secret(cfg.AccessKeyID), SecretAccessKey: outbox.Secret(cfg.SecretKey)},
		QueueURL:   cfg.QueueURL,
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, transport.Close()) }()
	return relayUntilDelivered(ctx, store, transport, ids, w)
}

// relayUntilDelivered runs a relay until the messages with ids have left the outbox (the store
// deletes a message when its publish is acknowledged), or gives up after 30 seconds.
func relayUntilDelivered(ctx context.Context, store *mongo.Store, transport outbox.Transport, ids []string, w io.Writer) error {
	relay, err := outbox.NewRelay(store, transport, outbox.Config{PollInterval: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	if err := relay.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = relay.Stop(context.WithoutCancel(ctx)) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		left, err := store.Collection().CountDocuments(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		if err != nil {
			return err
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			s := relay.Stats()
			return fmt.Errorf("%d of %d events still undelivered after 30s (published %d, failed %d, dead %d): is the queue reachable? run `outbox dead list` for dead ones",
				left, len(ids), s.Published, s.Failed, s.Dead)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	_, _ = fmt.Fprintf(w, "relay published %d events to SQS (stats: %+v)\n", len(ids), relay.Stats())
	return nil
}
