package mongo

import (
	"context"
	"errors"
	"fmt"
	"time"

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
// collection), or adds what an earlier schema version lacks, and records the version in
// <collection>_schema: MongoDB has no schema beyond indexes, and the name is the one every store
// uses. It is idempotent: existing indexes of the same name are left alone. It fails when an
// index of the same name exists with other keys or options, naming it (drop that index to let
// EnsureSchema create the current form), and refuses a collection a newer binary upgraded
// (*SchemaVersionError).
func (s *Store) EnsureSchema(ctx context.Context) error {
	if err := s.checkOpen("ensure schema"); err != nil {
		return err
	}
	v, err := s.recordedVersion(ctx)
	if err != nil {
		return s.wrap("ensure schema", err)
	}
	known := knownVersion()
	if v > known {
		return &SchemaVersionError{Collection: s.coll.Name(), Version: v, Known: known}
	}
	if v == known {
		// Nothing to upgrade; the indexes are still checked (cheaply: creating an existing index
		// is a no-op), so one changed or dropped behind the store's back is reported or made again.
		return s.ensureIndexes(ctx)
	}
	for _, m := range migrations[v:] {
		if err := m.run(s, ctx); err != nil {
			return err
		}
		// Recorded after it ran: a migration is idempotent, so a run cut short between the
		// two is done again by the next EnsureSchema.
		_, err := s.versions().InsertOne(ctx, bson.D{{Key: "_id", Value: m.version}, {Key: "applied_at", Value: time.Now().UTC()}})
		if err != nil && !mongo.IsDuplicateKeyError(err) {
			return s.wrap(fmt.Sprintf("ensure schema: record version %d", m.version), err)
		}
	}
	return nil
}

// ensureIndexes is schema version 1: the indexes and the counter collection.
func (s *Store) ensureIndexes(ctx context.Context) error {
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
