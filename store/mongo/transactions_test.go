package mongo

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
)

// ferretRSURI is the FerretDB instance started with --repl-set-name: it answers hello as a
// replica set primary, accepts the transaction fields of every command, applies each write at
// once and only fails at commitTransaction. Writing there "in a transaction" would be writing
// without one.
func ferretRSURI() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_FERRETDB_RS_URI", "mongodb://127.0.0.1:27018/?replicaSet=rs0")
}

// TestTransactionsUnsupported checks that on servers without transactions Execute and Add
// refuse before anything is written: FerretDB as a standalone server, and FerretDB posing as a
// replica set.
func TestTransactionsUnsupported(t *testing.T) {
	servers := []struct {
		name, uri, reason string
	}{
		{"Standalone", ferretURI(), "standalone"},
		{"PosingAsReplicaSet", ferretRSURI(), "commitTransaction"},
	}
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			s := openStore(t, srv.uri, func(err error) { outboxtest.NeedService(t, "FerretDB ("+srv.name+")", err) }, Config{})
			ctx := testCtx(t)
			business := s.Client().Database(s.cfg.Database).Collection("orders")

			err := s.CheckTransactions(ctx)
			if !errors.Is(err, ErrTransactionsUnsupported) || !strings.Contains(err.Error(), srv.reason) {
				t.Fatalf("CheckTransactions = %v, want ErrTransactionsUnsupported naming %q", err, srv.reason)
			}

			called := false
			msg := outboxtest.NewMessages(1, "ORDER_PLACED", "order-1")[0]
			_, err = Execute(ctx, s, func(ctx context.Context) (string, error) {
				called = true
				_, err := business.InsertOne(ctx, bson.D{{Key: "_id", Value: "order-1"}})
				return "order-1", err
			}, msg)
			if !errors.Is(err, ErrTransactionsUnsupported) {
				t.Fatalf("Execute = %v, want ErrTransactionsUnsupported", err)
			}
			if called {
				t.Fatal("Execute ran fn on a server without transactions")
			}

			// Add inside a "transaction" the driver lets the caller start.
			sess, err := s.Client().StartSession()
			if err != nil {
				t.Fatal(err)
			}
			defer sess.EndSession(context.WithoutCancel(ctx))
			if err := sess.StartTransaction(); err != nil {
				t.Fatal(err)
			}
			err = s.Add(mongo.NewSessionContext(ctx, sess), outboxtest.NewMessages(2, "T", "")...)
			if !errors.Is(err, ErrTransactionsUnsupported) {
				t.Fatalf("Add in a session transaction = %v, want ErrTransactionsUnsupported", err)
			}
			_ = sess.AbortTransaction(ctx)

			assertEmpty(t, business, s.Collection(), s.seqs)
		})
	}
}

// assertEmpty fails when any of the collections holds a document.
func assertEmpty(t *testing.T, colls ...*mongo.Collection) {
	t.Helper()
	for _, c := range colls {
		n, err := c.CountDocuments(testCtx(t), bson.D{})
		if err != nil {
			t.Fatalf("count %s: %v", c.Name(), err)
		}
		if n != 0 {
			t.Fatalf("%s holds %d documents after a refused write", c.Name(), n)
		}
	}
}

// TestAddOutsideTransaction checks that Add refuses a ctx without a running transaction, on any
// server, before touching it.
func TestAddOutsideTransaction(t *testing.T) {
	s := openFerret(t, Config{})
	ctx := testCtx(t)
	if err := s.Add(ctx, outboxtest.NewMessages(1, "T", "")...); !errors.Is(err, ErrNoTransaction) {
		t.Fatalf("Add without a session = %v, want ErrNoTransaction", err)
	}
	sess, err := s.Client().StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	if err := s.Add(mongo.NewSessionContext(ctx, sess), outboxtest.NewMessages(1, "T", "")...); !errors.Is(err, ErrNoTransaction) {
		t.Fatalf("Add in a session without a transaction = %v, want ErrNoTransaction", err)
	}
	assertEmpty(t, s.Collection())
}

// TestExecuteReplicaSet covers Execute on a real replica set: the business write and the events
// commit together, fn's result becomes Result, an error or a panic in fn leaves nothing behind.
func TestExecuteReplicaSet(t *testing.T) {
	s := openReplicaSet(t, Config{})
	ctx := testCtx(t)
	if err := s.CheckTransactions(ctx); err != nil {
		t.Fatalf("CheckTransactions on the replica set: %v", err)
	}
	orders := s.Client().Database(s.cfg.Database).Collection("orders")
	if err := s.Client().Database(s.cfg.Database).CreateCollection(ctx, "orders"); err != nil {
		t.Fatal(err)
	}

	t.Run("Commits", func(t *testing.T) {
		msgs := outboxtest.NewMessages(2, "ORDER_PLACED", "order-1")
		msgs[1].Result = []byte(`{"own":true}`)
		got, err := Execute(ctx, s, func(ctx context.Context) (map[string]string, error) {
			_, err := orders.InsertOne(ctx, bson.D{{Key: "_id", Value: "order-1"}})
			return map[string]string{"id": "order-1"}, err
		}, msgs...)
		if err != nil || got["id"] != "order-1" {
			t.Fatalf("Execute = %v, %v", got, err)
		}
		claimed, err := s.Claim(ctx, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: 60e9})
		if err != nil || len(claimed) != 2 {
			t.Fatalf("claim = %d messages, %v; want 2", len(claimed), err)
		}
		if string(claimed[0].Result) != `{"id":"order-1"}` || string(claimed[1].Result) != `{"own":true}` {
			t.Fatalf("results %s, %s: want fn's result, and the message's own", claimed[0].Result, claimed[1].Result)
		}
		if _, err := s.Ack(ctx, "o", []string{claimed[0].ID, claimed[1].ID}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrorRollsBack", func(t *testing.T) {
		boom := errors.New("out of stock")
		_, err := Execute(ctx, s, func(ctx context.Context) (int, error) {
			if _, err := orders.InsertOne(ctx, bson.D{{Key: "_id", Value: "order-2"}}); err != nil {
				return 0, err
			}
			return 0, boom
		}, outboxtest.NewMessages(1, "ORDER_PLACED", "order-2")...)
		if !errors.Is(err, boom) {
			t.Fatalf("Execute = %v, want fn's error", err)
		}
		assertNoOrder(t, orders, "order-2")
		assertNothingClaimable(t, s)
	})
	t.Run("PanicRollsBack", func(t *testing.T) {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("the panic in fn was not re-raised")
				}
			}()
			_, _ = Execute(ctx, s, func(ctx context.Context) (int, error) {
				if _, err := orders.InsertOne(ctx, bson.D{{Key: "_id", Value: "order-3"}}); err != nil {
					return 0, err
				}
				panic("bug")
			}, outboxtest.NewMessages(1, "ORDER_PLACED", "order-3")...)
		}()
		assertNoOrder(t, orders, "order-3")
		assertNothingClaimable(t, s)
	})
	t.Run("BadMessageRollsBack", func(t *testing.T) {
		_, err := Execute(ctx, s, func(ctx context.Context) (int, error) {
			_, err := orders.InsertOne(ctx, bson.D{{Key: "_id", Value: "order-4"}})
			return 0, err
		}, &outbox.Message{Type: "T", Payload: []byte(`{`)})
		if !errors.Is(err, outbox.ErrInvalidMessage) {
			t.Fatalf("Execute = %v, want outbox.ErrInvalidMessage", err)
		}
		assertNoOrder(t, orders, "order-4")
	})
}

func assertNoOrder(t *testing.T, orders *mongo.Collection, id string) {
	t.Helper()
	if err := orders.FindOne(testCtx(t), bson.D{{Key: "_id", Value: id}}).Err(); !errors.Is(err, mongo.ErrNoDocuments) {
		t.Fatalf("the business write %s survived a rollback (find: %v)", id, err)
	}
}

func assertNothingClaimable(t *testing.T, s *Store) {
	t.Helper()
	got, err := s.Claim(testCtx(t), outbox.ClaimRequest{Token: "check", Limit: 10, Lease: 60e9})
	if err != nil || len(got) != 0 {
		t.Fatalf("claim after a rollback = %d messages, %v; want none", len(got), err)
	}
}
