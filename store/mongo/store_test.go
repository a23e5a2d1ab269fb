package mongo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
)

// The tests here are serial and run on FerretDB: what the store does beyond the suite.

func TestCorruptDocumentDeadLettered(t *testing.T) {
	s := openFerret(t, Config{})
	ctx := testCtx(t)
	good := outboxtest.NewMessages(1, "T", "")
	if err := s.add(ctx, good); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	// Written by something else: a payload that is a document, not JSON text.
	_, err := s.Collection().InsertOne(ctx, bson.D{
		{Key: fID, Value: "01931a2b-3c4d-7e5f-8a9b-0c1d2e3f4a5b"}, {Key: fType, Value: "T"},
		{Key: fPayload, Value: bson.D{{Key: "a", Value: 1}}}, {Key: fCreatedAt, Value: past},
		{Key: fStatus, Value: "pending"}, {Key: fAttempts, Value: 0}, {Key: fAvailableAt, Value: past},
	})
	if err != nil {
		t.Fatal(err)
	}
	// And one whose _id is not even a string.
	oid := bson.NewObjectID()
	_, err = s.Collection().InsertOne(ctx, bson.D{{Key: fID, Value: oid}, {Key: fStatus, Value: "pending"}, {Key: fAvailableAt, Value: past}})
	if err != nil {
		t.Fatal(err)
	}

	got, err := s.Claim(ctx, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute})
	if err != nil {
		t.Fatalf("claim with corrupt documents: %v", err)
	}
	if len(got) != 1 || got[0].ID != good[0].ID {
		t.Fatalf("claimed %v, want only the good message %s", outboxtest.IDs(got), good[0].ID)
	}
	dead, err := s.ListDead(ctx, outbox.DeadFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want the 2 corrupt documents", len(dead))
	}
	reasons := map[string]string{}
	for _, d := range dead {
		reasons[d.ID] = d.LastError
	}
	if r := reasons["01931a2b-3c4d-7e5f-8a9b-0c1d2e3f4a5b"]; !strings.Contains(r, "payload") || !strings.HasPrefix(r, "mongo: corrupt message: corrupt document") {
		t.Fatalf("reason for the bad payload = %q", r)
	}
	found := false
	for id, r := range reasons {
		if strings.Contains(id, oid.Hex()) && strings.Contains(r, "_id") {
			found = true
		}
	}
	if !found {
		t.Fatalf("the document with an ObjectID _id is not listed with its reason: %v", reasons)
	}
	if c, err := s.Counts(ctx); err != nil || c.Dead != 2 || c.Pending != 1 {
		t.Fatalf("counts = %+v, %v; want 2 dead, 1 pending", c, err)
	}
}

func TestEnsureSchema(t *testing.T) {
	s := openFerret(t, Config{KeepDelivered: true, DeliveredTTL: time.Hour})
	ctx := testCtx(t)
	// openFerret created them once; again must be a no-op, whatever the server supports.
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatalf("second EnsureSchema: %v", err)
	}
	specs, err := s.Collection().Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sp := range specs {
		names = append(names, sp.Name)
	}
	for _, want := range []string{"outbox_due", "outbox_key_seq", "outbox_status_created", "outbox_delivered"} {
		if !slices.Contains(names, want) {
			t.Fatalf("indexes %v lack %s", names, want)
		}
	}
	seqColls, err := s.Client().Database(s.cfg.Database).ListCollectionNames(ctx, bson.D{{Key: "name", Value: s.seqs.Name()}})
	if err != nil || len(seqColls) != 1 {
		t.Fatalf("counter collection: %v, %v", seqColls, err)
	}

	// An index of ours changed by hand is reported by name, not silently kept.
	if err := s.Collection().Indexes().DropOne(ctx, "outbox_key_seq"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Collection().Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: fKey, Value: -1}}, Options: options.Index().SetName("outbox_key_seq")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureSchema(ctx); err == nil || !strings.Contains(err.Error(), `"outbox_key_seq"`) {
		t.Fatalf("EnsureSchema over a conflicting index = %v, want an error naming it", err)
	}
}

func TestSequencePerKey(t *testing.T) {
	s := openFerret(t, Config{})
	ctx := testCtx(t)
	batch := append(outboxtest.NewMessages(2, "T", "a"), outboxtest.NewMessages(1, "T", "b")...)
	batch = append(batch, outboxtest.NewMessages(1, "T", "")...)
	batch = append(batch, outboxtest.NewMessages(1, "T", "a")...)
	if err := s.add(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.add(ctx, outboxtest.NewMessages(1, "T", "a")); err != nil {
		t.Fatal(err)
	}
	// A second store has not seen the keys: its counter creation must not reset them.
	if err := reopen(t, s).add(ctx, outboxtest.NewMessages(1, "T", "b")); err != nil {
		t.Fatal(err)
	}
	cur, err := s.Collection().Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: fCreatedAt, Value: 1}, {Key: fID, Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	var docs []struct {
		Key string `bson:"key"`
		Seq int64  `bson:"seq"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, fmt.Sprintf("%s%d", d.Key, d.Seq))
	}
	want := []string{"a1", "a2", "b1", "0", "a3", "a4", "b2"}
	if !slices.Equal(got, want) {
		t.Fatalf("key+seq in write order = %v, want %v", got, want)
	}
}

// TestOrderedBlockedKeyDoesNotStarve: a key whose dead head holds a backlog longer than a
// claim's window must not hide the keys behind it.
func TestOrderedBlockedKeyDoesNotStarve(t *testing.T) {
	s := openFerret(t, Config{})
	ctx := testCtx(t)
	blocked := outboxtest.NewMessages(60, "T", "blocked")
	if err := s.add(ctx, blocked); err != nil {
		t.Fatal(err)
	}
	other := outboxtest.NewMessages(1, "T", "other")
	if err := s.add(ctx, other); err != nil {
		t.Fatal(err)
	}
	got, err := s.Claim(ctx, outbox.ClaimRequest{Token: "o", Limit: 1, Lease: time.Minute, Ordered: true})
	if err != nil || len(got) != 1 || got[0].ID != blocked[0].ID {
		t.Fatalf("first claim = %v, %v; want the blocked key's head", outboxtest.IDs(got), err)
	}
	if _, err := s.Nack(ctx, "o", []outbox.Failure{{ID: blocked[0].ID, Error: "poison", Dead: true}}); err != nil {
		t.Fatal(err)
	}
	got, err = s.Claim(ctx, outbox.ClaimRequest{Token: "o", Limit: 5, Lease: time.Minute, Ordered: true})
	if err != nil || len(got) != 1 || got[0].ID != other[0].ID {
		t.Fatalf("claim behind a blocked key = %v, %v; want %s", outboxtest.IDs(got), err, other[0].ID)
	}
}

func TestListenUnavailable(t *testing.T) {
	s := openFerret(t, Config{})
	ch, err := s.Listen(testCtx(t))
	if err == nil || ch != nil {
		t.Fatalf("Listen on a server without change streams = %v, %v; want an error", ch, err)
	}
	if !strings.HasPrefix(err.Error(), "mongo: listen: change streams unavailable") {
		t.Fatalf("error %q does not say why", err)
	}
}

// TestNotifierReplicaSet: a change stream wakes the listener on insert, and ends with ctx.
func TestNotifierReplicaSet(t *testing.T) {
	s := openReplicaSet(t, Config{})
	ctx, cancel := context.WithCancel(testCtx(t))
	ch, err := s.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := addCommitted(testCtx(t), s, outboxtest.NewMessages(1, "T", "")...); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no signal within 5s of a committed insert")
	}
	cancel()
	for range ch { // closed once the watcher stops
	}
}

func TestClose(t *testing.T) {
	s := openFerret(t, Config{})
	ctx := testCtx(t)
	// A store over the caller's client leaves it open.
	borrowed, err := New(ctx, Config{Client: s.Client(), Database: s.cfg.Database})
	if err != nil {
		t.Fatal(err)
	}
	if err := borrowed.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Client().Ping(ctx, nil); err != nil {
		t.Fatalf("closing a store disconnected the caller's client: %v", err)
	}
	if _, err := borrowed.Claim(ctx, outbox.ClaimRequest{Token: "o", Limit: 1, Lease: time.Second}); !errors.Is(err, outbox.ErrClosed) {
		t.Fatalf("claim after close = %v, want outbox.ErrClosed", err)
	}
	if err := borrowed.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}

	// A store that connected disconnects on Close.
	own := reopen(t, s)
	if err := own.Close(); err != nil {
		t.Fatal(err)
	}
	if err := own.Client().Ping(ctx, nil); err == nil {
		t.Fatal("the store's own client still answers after Close")
	}
	for name, call := range map[string]func() error{
		"Ack":  func() error { _, err := own.Ack(ctx, "o", []string{"x"}); return err },
		"Nack": func() error { _, err := own.Nack(ctx, "o", nil); return err },
		"Add":  func() error { return own.Add(ctx) },
		"Execute": func() error {
			_, err := Execute(ctx, own, func(context.Context) (int, error) { return 0, nil })
			return err
		},
		"Counts":    func() error { _, err := own.Counts(ctx); return err },
		"Listen":    func() error { _, err := own.Listen(ctx); return err },
		"Retention": func() error { _, err := own.DeleteDelivered(ctx, time.Hour, 1); return err },
		"Indexes":   func() error { return own.EnsureSchema(ctx) },
	} {
		if err := call(); !errors.Is(err, outbox.ErrClosed) {
			t.Errorf("%s after close = %v, want outbox.ErrClosed", name, err)
		}
	}
	if got := own.String(); !strings.Contains(got, s.cfg.Database+".outbox") {
		t.Fatalf("String() = %q", got)
	}
}

func TestRetentionLimit(t *testing.T) {
	s := openFerret(t, Config{KeepDelivered: true})
	if _, err := s.DeleteDelivered(testCtx(t), time.Hour, 0); !errors.Is(err, outbox.ErrInvalidArgument) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("DeleteDelivered with limit 0 = %v, want an invalid argument naming limit", err)
	}
}
