package mongo

import (
	"context"
	"go.mongodb.org/mongo-driver/v2/bson"
	"sync"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
)

// TestStoreReplicaSet runs the whole store suite, every feature on, against the replica set
// OUTBOX_TEST_MONGO_URI names (skipped when it is unset).
func TestStoreReplicaSet(t *testing.T) {
	replicaSetURI(t)
	for _, keep := range []bool{false, true} {
		name := "DeleteOnAck"
		if keep {
			name = "KeepDelivered"
		}
		t.Run(name, func(t *testing.T) {
			outboxtest.RunStoreSuite(t, func(t *testing.T) outboxtest.StoreHarness {
				s := openReplicaSet(t, Config{KeepDelivered: keep})
				return outboxtest.StoreHarness{
					Store:         s,
					Add:           func(ctx context.Context, msgs ...*outbox.Message) error { return addCommitted(ctx, s, msgs...) },
					AddRolledBack: func(ctx context.Context, msgs ...*outbox.Message) error { return addRolledBack(ctx, s, msgs...) },
					Reopen:        func(t *testing.T) outbox.Store { return reopen(t, s) },
					Corrupt: func(ctx context.Context, id string) error {
						_, err := s.coll.UpdateOne(ctx, bson.D{{Key: fID, Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: fType, Value: "BAD\x07"}}}})
						return err
					},
				}
			}, outboxtest.StoreFeatures{
				Transactions:     true,
				ConcurrentClaims: true,
				Notifier:         true,
				Inspector:        true,
				Retention:        keep,
			})
		})
	}
}

// TestStoreFerretDB runs the serial part of the store suite against FerretDB: no transactions
// (messages are written by the same insert path Add uses, without the transaction gate), no
// concurrent claims (store calls are serialized, see serialStore), no change streams.
func TestStoreFerretDB(t *testing.T) {
	for _, keep := range []bool{false, true} {
		name := "DeleteOnAck"
		if keep {
			name = "KeepDelivered"
		}
		t.Run(name, func(t *testing.T) {
			outboxtest.RunStoreSuite(t, func(t *testing.T) outboxtest.StoreHarness {
				s := openFerret(t, Config{KeepDelivered: keep})
				mu := &sync.Mutex{}
				return outboxtest.StoreHarness{
					Store: serialStore{Store: s, mu: mu},
					Add: func(ctx context.Context, msgs ...*outbox.Message) error {
						mu.Lock()
						defer mu.Unlock()
						return s.add(ctx, msgs)
					},
					Reopen: func(t *testing.T) outbox.Store { return serialStore{Store: reopen(t, s), mu: mu} },
					Corrupt: func(ctx context.Context, id string) error {
						_, err := s.coll.UpdateOne(ctx, bson.D{{Key: fID, Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: fType, Value: "BAD\x07"}}}})
						return err
					},
				}
			}, outboxtest.StoreFeatures{
				Inspector: true,
				Retention: keep,
			})
		})
	}
}
