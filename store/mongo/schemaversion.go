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

// SchemaVersion is the layout of the outbox collection (its indexes and companion collections)
// this package reads and writes. EnsureSchema brings a collection of any earlier layout to it
// and records it in <collection>_schema, one document per version; a database at a later
// version is refused.
const SchemaVersion = 1

// migration brings the outbox collection from version-1 to version. It must be idempotent:
// EnsureSchema records the version after running it, so a run cut short between the two runs it
// again.
type migration struct {
	version int
	run     func(s *Store, ctx context.Context) error
}

// migrations are the layouts in order. Version n is migrations[n-1]; a new layout appends its
// step here and raises SchemaVersion. Within a major version a step only adds (indexes,
// collections, fields with defaults read as absent), so running binaries keep working.
var migrations = []migration{
	{version: 1, run: (*Store).ensureIndexes},
}

// knownVersion is the newest version in migrations: SchemaVersion, unless a test appends one.
func knownVersion() int { return migrations[len(migrations)-1].version }

// SchemaVersionError is the verdict on a collection at a schema version this code does not
// know: a newer binary has upgraded it. It matches outbox.ErrSchema, so the relay's Start
// refuses it rather than write documents an older layout cannot describe.
type SchemaVersionError struct {
	Collection string
	Version    int // recorded in the database
	Known      int // the newest this code knows
}

func (e *SchemaVersionError) Error() string {
	return fmt.Sprintf("mongo: collection %s is at schema version %d; this outbox knows up to %d: upgrade the binary",
		e.Collection, e.Version, e.Known)
}

// Is reports whether target is outbox.ErrSchema.
func (e *SchemaVersionError) Is(target error) bool { return target == outbox.ErrSchema }

// versions is the collection recording the outbox collection's schema versions.
func (s *Store) versions() *mongo.Collection {
	return s.client.Database(s.cfg.Database).Collection(s.coll.Name() + "_schema")
}

// recordedVersion is the newest version recorded, 0 when none is.
func (s *Store) recordedVersion(ctx context.Context) (int, error) {
	var doc struct {
		Version int `bson:"_id"`
	}
	err := s.versions().FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "_id", Value: -1}})).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil
	}
	return doc.Version, err
}

// SchemaVersion returns the version of the outbox collection's layout recorded in the database:
// 0 when there is no outbox collection, 1 for one made before versions were recorded (which
// EnsureSchema adopts, its step 1 being idempotent).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	if err := s.checkOpen("schema version"); err != nil {
		return 0, err
	}
	v, err := s.recordedVersion(ctx)
	if err != nil || v > 0 {
		return v, s.wrap("schema version", err)
	}
	names, err := s.client.Database(s.cfg.Database).ListCollectionNames(ctx, bson.D{{Key: "name", Value: s.coll.Name()}})
	if err != nil {
		return 0, s.wrap("schema version", err)
	}
	if len(names) == 0 {
		return 0, nil
	}
	return 1, nil
}

// CheckSchema reports whether the outbox collection is at a schema version this code knows: a
// *SchemaVersionError for a collection a newer binary upgraded. A collection that does not exist
// yet is no error: MongoDB creates it at the first write, and EnsureSchema's indexes are only
// what makes claims fast. The relay calls it at Start.
func (s *Store) CheckSchema(ctx context.Context) error {
	if err := s.checkOpen("check schema"); err != nil {
		return err
	}
	v, err := s.recordedVersion(ctx)
	if err != nil {
		return s.wrap("check schema", err)
	}
	if known := knownVersion(); v > known {
		return &SchemaVersionError{Collection: s.coll.Name(), Version: v, Known: known}
	}
	return nil
}
