package mongo

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/txoutbox/outbox"
)

// EnsureSchema records its version once, however often it runs; SchemaVersion reads it.
func TestSchemaVersionRecorded(t *testing.T) {
	s := openFerret(t, Config{}) // runs EnsureSchema
	if err := s.EnsureSchema(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if v, err := s.SchemaVersion(testCtx(t)); err != nil || v != SchemaVersion {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, SchemaVersion)
	}
	n, err := s.versions().CountDocuments(testCtx(t), bson.D{})
	if err != nil || n != 1 {
		t.Fatalf("%d version documents (%v), want 1", n, err)
	}
}

// Without a recorded version: 0 when there is no collection, 1 for a collection made before
// versions were recorded, which EnsureSchema then records.
func TestSchemaVersionUnrecorded(t *testing.T) {
	s := openFerret(t, Config{})
	if _, err := s.versions().DeleteMany(testCtx(t), bson.D{}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.SchemaVersion(testCtx(t)); err != nil || v != 1 {
		t.Fatalf("an unversioned outbox collection: SchemaVersion = %d, %v; want 1", v, err)
	}
	other, err := New(testCtx(t), Config{URI: s.cfg.URI, Database: s.cfg.Database, Collection: "never_written", ConnectTimeout: connectTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Close() }()
	if v, err := other.SchemaVersion(testCtx(t)); err != nil || v != 0 {
		t.Fatalf("no collection: SchemaVersion = %d, %v; want 0", v, err)
	}
	if err := s.EnsureSchema(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.versions().CountDocuments(testCtx(t), bson.D{}); err != nil || n != 1 {
		t.Fatalf("after EnsureSchema: %d version documents (%v), want 1", n, err)
	}
}

// The next version's code upgrades today's collection; a binary that knows only today's then
// refuses it, at CheckSchema (so a relay's Start fails) and at EnsureSchema.
func TestSchemaUpgradeToTheNextVersion(t *testing.T) {
	s := openFerret(t, Config{})
	next := SchemaVersion + 1
	ran := 0
	saved := migrations
	migrations = append(migrations[:len(migrations):len(migrations)], migration{version: next, run: func(s *Store, ctx context.Context) error {
		ran++
		return s.client.Database(s.cfg.Database).CreateCollection(ctx, s.coll.Name()+"_next")
	}})
	err := s.EnsureSchema(testCtx(t))
	v, verr := s.SchemaVersion(testCtx(t))
	againErr := s.EnsureSchema(testCtx(t))
	migrations = saved
	if err != nil || againErr != nil || verr != nil || v != next || ran != 1 {
		t.Fatalf("upgrade: %v, again %v; version %d (%v), want %d; the step ran %d times, want 1", err, againErr, v, verr, next, ran)
	}

	var ve *SchemaVersionError
	if err := s.CheckSchema(testCtx(t)); !errors.As(err, &ve) || !errors.Is(err, outbox.ErrSchema) || ve.Version != next {
		t.Fatalf("CheckSchema of a newer collection: %v, want a SchemaVersionError at %d", err, next)
	}
	if err := s.EnsureSchema(testCtx(t)); !errors.As(err, &ve) || !strings.Contains(err.Error(), "upgrade the binary") {
		t.Fatalf("EnsureSchema of a newer collection: %v, want a SchemaVersionError", err)
	}
}
