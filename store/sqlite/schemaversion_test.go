package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/sqlite"
)

func openAt(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.New(context.Background(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func wantVersion(t *testing.T, s *sqlite.Store, want int) {
	t.Helper()
	v, err := s.SchemaVersion(context.Background())
	if err != nil || v != want {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, want)
	}
}

// A new file has no table (version 0); EnsureSchema creates it at SchemaVersion and records it
// once, however often it runs.
func TestSchemaVersionFresh(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "app.db"))
	wantVersion(t, s, 0)
	for range 2 {
		if err := s.EnsureSchema(ctx); err != nil {
			t.Fatal(err)
		}
		wantVersion(t, s, sqlite.SchemaVersion)
	}
	if n := count(t, s.DB(), `SELECT count(*) FROM "outbox_schema"`); n != 1 {
		t.Fatalf("%d version rows, want 1", n)
	}
}

// A table made before versions were recorded (SchemaSQL's DDL alone, as a migration tool
// applied it) is adopted as version 1.
func TestSchemaVersionAdoptsAnUnversionedTable(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "app.db"))
	ddl, err := sqlite.SchemaSQL("outbox")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, s, 1)
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, s, sqlite.SchemaVersion)
}

// The next version's code upgrades today's table, keeping its rows; the statements UpgradeSQL
// prints do the same for a migration tool; a binary that knows only today's version then
// refuses the upgraded table (at CheckSchema, so a relay's Start fails) rather than write to it.
func TestSchemaUpgradeToTheNextVersion(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openAt(t, filepath.Join(dir, "app.db"))
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	add(t, s, msg("T", "k"), msg("T", "k"))
	next := sqlite.SchemaVersion + 1
	remove := sqlite.AddMigration(next, func(table string) string {
		return `ALTER TABLE "` + table + `" ADD COLUMN tenant TEXT NOT NULL DEFAULT '';` + "\n"
	})
	upgradeSQL, err := sqlite.UpgradeSQL("outbox", sqlite.SchemaVersion)
	if err != nil {
		remove()
		t.Fatal(err)
	}
	err = s.EnsureSchema(ctx)
	v, verr := s.SchemaVersion(ctx)
	remove()
	if err != nil || verr != nil || v != next {
		t.Fatalf("upgrade: %v; version %d (%v), want %d", err, v, verr, next)
	}
	if n := count(t, s.DB(), `SELECT count(*) FROM "outbox" WHERE tenant = ''`); n != 2 {
		t.Fatalf("%d rows with the new column's default, want the 2 written before", n)
	}
	if !strings.Contains(upgradeSQL, "ADD COLUMN tenant") || strings.Contains(upgradeSQL, "CREATE TABLE IF NOT EXISTS \"outbox\" (") {
		t.Fatalf("UpgradeSQL from %d:\n%s\nwant the next version's statements only", sqlite.SchemaVersion, upgradeSQL)
	}

	// The same statements applied by a tool to a second file at today's version.
	other := openAt(t, filepath.Join(dir, "other.db"))
	if err := other.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := other.DB().ExecContext(ctx, upgradeSQL); err != nil {
		t.Fatalf("apply UpgradeSQL: %v", err)
	}
	wantVersion(t, other, next)
	if n := count(t, other.DB(), `SELECT count(*) FROM pragma_table_info('outbox') WHERE name = 'tenant'`); n != 1 {
		t.Fatal("UpgradeSQL did not add the next version's column")
	}

	var ve *sqlite.SchemaVersionError
	if err := s.CheckSchema(ctx); !errors.As(err, &ve) || !errors.Is(err, outbox.ErrSchema) || ve.Version != next {
		t.Fatalf("CheckSchema of a newer table: %v, want a SchemaVersionError at %d", err, next)
	}
	if err := s.EnsureSchema(ctx); !errors.As(err, &ve) || !strings.Contains(err.Error(), "upgrade the binary") {
		t.Fatalf("EnsureSchema of a newer table: %v, want a SchemaVersionError", err)
	}
}

// EnsureSchema from many stores at once creates the table once and records one version.
func TestSchemaVersionConcurrentEnsure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		s := openAt(t, path)
		wg.Go(func() { errs <- s.EnsureSchema(context.Background()) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s := openAt(t, path)
	wantVersion(t, s, sqlite.SchemaVersion)
	if n := count(t, s.DB(), `SELECT count(*) FROM "outbox_schema"`); n != 1 {
		t.Fatalf("%d version rows, want 1", n)
	}
}

// Another table of the outbox's name is refused, named, and left as it is.
func TestEnsureSchemaRefusesAForeignTable(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "app.db"))
	if _, err := s.DB().ExecContext(ctx, `CREATE TABLE outbox (id TEXT, status TEXT)`); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureSchema(ctx); !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "is not an outbox table") {
		t.Fatalf("EnsureSchema over a foreign table: %v", err)
	}
	if _, err := s.SchemaVersion(ctx); !errors.Is(err, outbox.ErrSchema) {
		t.Fatalf("SchemaVersion of a foreign table: %v", err)
	}
	if n := count(t, s.DB(), `SELECT count(*) FROM sqlite_schema WHERE name = 'outbox_schema'`); n != 0 {
		t.Fatal("EnsureSchema wrote a version table beside a foreign table")
	}
}
