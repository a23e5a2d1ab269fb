package inbox_test

import (
	"context"
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/goleak"

	"github.com/txoutbox/outbox/outboxtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// replicaSetURI returns OUTBOX_TEST_MONGO_URI or skips: no replica set can run on the machines
// this project is tested on, so its absence is never a failure.
func replicaSetURI(t testing.TB) string {
	t.Helper()
	uri := os.Getenv("OUTBOX_TEST_MONGO_URI")
	if uri == "" {
		t.Skip("OUTBOX_TEST_MONGO_URI is unset: the inbox needs a MongoDB replica set for its transactions, so the transactional inbox suite does not run; see store/mongo/README.md to start one")
	}
	return uri
}

// ferretURI is FerretDB (scripts/services/ferretdb start), which has no transactions: the inbox
// must refuse to work there, and its non-transactional checks run against it.
func ferretURI() string {
	if v := os.Getenv("OUTBOX_TEST_FERRETDB_URI"); v != "" {
		return v
	}
	return "mongodb://127.0.0.1:27017/"
}

// ferretReplicaSetURI is the FerretDB instance started with --repl-set-name: it presents itself
// as a replica set primary but ignores transactions, the treacherous case.
func ferretReplicaSetURI() string {
	if v := os.Getenv("OUTBOX_TEST_FERRETDB_RS_URI"); v != "" {
		return v
	}
	return "mongodb://127.0.0.1:27018/?directConnection=true"
}

// connect returns a client of uri and a fresh database name; the database is dropped and the
// client disconnected when the test ends. An unreachable server skips (fails in CI).
func connect(t *testing.T, uri, service string) (*mongo.Client, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(3 * time.Second))
	if err == nil {
		if err = client.Ping(ctx, nil); err != nil {
			_ = client.Disconnect(context.Background())
		}
	}
	if err != nil {
		outboxtest.NeedService(t, service, err)
	}
	db := "inbox_" + strings.ToLower(rand.Text()[:10])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := client.Database(db).Drop(ctx); err != nil {
			t.Errorf("drop %s: %v", db, err)
		}
		_ = client.Disconnect(ctx)
	})
	return client, db
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
