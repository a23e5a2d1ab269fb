package mongo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
)

// The tests here need transactions, so a replica set (OUTBOX_TEST_MONGO_URI); they skip
// without one.

// TestSeqFollowsCommitOrder: two transactions write the same key; the one that takes the
// counter second has to wait for the first to commit, so its message is published second even
// though its ID is older.
func TestSeqFollowsCommitOrder(t *testing.T) {
	s := openReplicaSet(t, Config{})
	ctx := testCtx(t)
	// b is built (and so gets its UUIDv7) before a: ID order and commit order disagree.
	b := outboxtest.NewMessages(1, "B", "k")[0]
	if err := backend.Prepare(ctx, []*outbox.Message{b}, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	a := outboxtest.NewMessages(1, "A", "k")[0]

	aHoldsCounter := make(chan struct{})
	bTried := make(chan struct{})
	var aOnce, bOnce sync.Once // a retried callback must not close twice
	var bAttempts atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		errs <- inTransaction(ctx, s, func(ctx context.Context) error {
			if err := s.Add(ctx, a); err != nil {
				return err
			}
			aOnce.Do(func() { close(aHoldsCounter) })
			select { // commit once b met the counter a holds (or, had the server made b wait, soon)
			case <-bTried:
			case <-time.After(2 * time.Second):
			case <-ctx.Done():
			}
			return nil
		})
	}()
	go func() {
		defer wg.Done()
		<-aHoldsCounter
		errs <- inTransaction(ctx, s, func(ctx context.Context) error {
			err := s.Add(ctx, b)
			bAttempts.Add(1)
			bOnce.Do(func() { close(bTried) })
			return err // a write conflict: WithTransaction retries
		})
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("b's transaction ran %d time(s)", bAttempts.Load())
	req := outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute, Ordered: true}
	got, err := s.Claim(ctx, req)
	if err != nil || len(got) != 1 || got[0].ID != a.ID {
		t.Fatalf("first ordered claim = %v, %v; want a (%s), committed first", outboxtest.IDs(got), err, a.ID)
	}
	if _, err := s.Ack(ctx, "o", []string{a.ID}); err != nil {
		t.Fatal(err)
	}
	got, err = s.Claim(ctx, req)
	if err != nil || len(got) != 1 || got[0].ID != b.ID {
		t.Fatalf("second ordered claim = %v, %v; want b (%s)", outboxtest.IDs(got), err, b.ID)
	}
}

func inTransaction(ctx context.Context, s *Store, fn func(ctx context.Context) error) error {
	sess, err := s.Client().StartSession()
	if err != nil {
		return err
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) { return nil, fn(ctx) })
	return err
}

// TestExecuteSmallPool: Execute uses one connection at a time, so many more concurrent callers
// than the pool holds all finish (the origin package deadlocks here).
func TestExecuteSmallPool(t *testing.T) {
	uri := replicaSetURI(t)
	base := openReplicaSet(t, Config{})
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetMaxPoolSize(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	s, err := New(testCtx(t), Config{Client: client, Database: base.cfg.Database})
	if err != nil {
		t.Fatal(err)
	}
	orders := client.Database(base.cfg.Database).Collection("orders")
	ctx, cancel := context.WithTimeout(testCtx(t), 30*time.Second)
	defer cancel()
	const callers = 16
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Execute(ctx, s, func(ctx context.Context) (int, error) {
				_, err := orders.InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
				return i, err
			}, outboxtest.NewMessages(1, "ORDER_PLACED", fmt.Sprint("customer-", i%3))...)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("concurrent Execute calls stalled on a pool of 2 connections")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Collection().CountDocuments(ctx, bson.D{}); err != nil || n != callers {
		t.Fatalf("%d messages stored, %v; want %d", n, err, callers)
	}
}
