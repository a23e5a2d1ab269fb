package mongo

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox"
)

// index is one index EnsureSchema creates: the preferred form, and the plain form used where
// the server lacks partial or TTL indexes (FerretDB). Both serve the same queries.
type index struct {
	name     string
	keys     bson.D
	partial  bson.D // partialFilterExpression of the preferred form
	ttl      int32  // expireAfterSeconds of the preferred form; 0: none
	fallback bson.D // keys of the plain form
}

func (s *Store) indexes() []index {
	pending := bson.D{{Key: fStatus, Value: string(outbox.StatusPending)}}
	delivered := bson.D{{Key: fStatus, Value: string(outbox.StatusDelivered)}}
	ttl := int32(s.cfg.DeliveredTTL.Seconds())
	return []index{{
		// Claim: due pending messages, oldest due first. Partial, so delivered and dead
		// messages (which may be kept for long) do not weigh on it.
		name:     "outbox_due",
		keys:     bson.D{{Key: fAvailableAt, Value: 1}, {Key: fID, Value: 1}},
		partial:  pending,
		fallback: bson.D{{Key: fStatus, Value: 1}, {Key: fAvailableAt, Value: 1}, {Key: fID, Value: 1}},
	}, {
		// Ordered claims: the oldest undelivered message of a key.
		name: "outbox_key_seq",
		keys: bson.D{{Key: fKey, Value: 1}, {Key: fStatus, Value: 1}, {Key: fSeq, Value: 1}},
	}, {
		// Inspector: dead messages oldest first, and the oldest pending message.
		name: "outbox_status_created",
		keys: bson.D{{Key: fStatus, Value: 1}, {Key: fCreatedAt, Value: 1}},
	}, {
		// Retention: delivered messages by delivery time; with DeliveredTTL the server
		// deletes them itself.
		name:     "outbox_delivered",
		keys:     bson.D{{Key: fDeliveredAt, Value: 1}},
		partial:  delivered,
		ttl:      ttl,
		fallback: bson.D{{Key: fStatus, Value: 1}, {Key: fDeliveredAt, Value: 1}},
	}}
}

// EnsureSchema creates the outbox collection's indexes (and so the collection and its counter
// collection): MongoDB has no schema beyond them, and the name is the one every store uses. It
// is idempotent: existing indexes of the same name are left alone. It fails when an index of
// the same name exists with other keys or options, naming it; drop that index to let
// EnsureSchema create the current form.
func (s *Store) EnsureSchema(ctx context.Context) error {
	if err := s.checkOpen("ensure schema"); err != nil {
		return err
	}
	for _, ix := range s.indexes() {
		if err := s.createIndex(ctx, ix); err != nil {
			return err
		}
	}
	// The counters collection only needs its _id index; creating it here keeps collection
	// creation out of the writers' transactions.
	if err := s.client.Database(s.cfg.Database).CreateCollection(ctx, s.seqs.Name()); err != nil && !isNamespaceExists(err) {
		return s.wrap("ensure schema: create "+s.seqs.Name(), err)
	}
	return nil
}

func (s *Store) createIndex(ctx context.Context, ix index) error {
	opts := options.Index().SetName(ix.name)
	if ix.partial != nil {
		opts.SetPartialFilterExpression(ix.partial)
	}
	if ix.ttl > 0 {
		opts.SetExpireAfterSeconds(ix.ttl)
	}
	_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: ix.keys, Options: opts})
	if err != nil && isNotImplemented(err) && ix.fallback != nil {
		_, err = s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: ix.fallback, Options: options.Index().SetName(ix.name)})
	}
	if err != nil {
		var ce mongo.CommandError
		if errors.As(err, &ce) && (ce.Code == 85 || ce.Code == 86) { // IndexOptionsConflict, IndexKeySpecsConflict
			return s.wrap(fmt.Sprintf("ensure schema: index %q exists with other keys or options (drop it to recreate)", ix.name), err)
		}
		return s.wrap("ensure schema: create "+ix.name, err)
	}
	return nil
}

// isNotImplemented tells a server without partial or TTL indexes.
func isNotImplemented(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && (ce.Code == 238 || ce.Code == 115) // NotImplemented, CommandNotSupported
}

func isNamespaceExists(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && ce.Code == 48 // NamespaceExists
}
