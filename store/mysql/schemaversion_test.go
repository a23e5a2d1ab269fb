package mysql

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/txoutbox/outbox"
)

func wantVersion(t *testing.T, s *Store, want int) {
	t.Helper()
	v, err := s.SchemaVersion(context.Background())
	if err != nil || v != want {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, want)
	}
}

// EnsureSchema records its version once, however often it runs (testStore runs it twice).
func TestSchemaVersionRecorded(t *testing.T) {
	s := testStore(t)
	wantVersion(t, s, SchemaVersion)
	var n int
	if err := s.DB().QueryRow("SELECT count(*) FROM " + quote(s.cfg.Table+"_schema")).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d version rows (%v), want 1", n, err)
	}
}

// A table made before versions were recorded (SchemaSQL's DDL alone, as a migration tool
// applied it) is version 1, and EnsureSchema records it so; no table is version 0.
func TestSchemaVersionAdoptsAnUnversionedTable(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	if _, err := s.DB().ExecContext(ctx, "DROP TABLE "+quote(s.cfg.Table+"_schema")); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, s, 1)
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, s, SchemaVersion)
	if _, err := s.DB().ExecContext(ctx, "DROP TABLE "+s.table+", "+quote(s.cfg.Table+"_schema")); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, s, 0)
}

// The next version's code upgrades today's table, keeping its rows; the statements UpgradeSQL
// prints do the same for a migration tool; a binary that knows only today's version then
// refuses the upgraded table at CheckSchema (so a relay's Start fails) and EnsureSchema.
func TestSchemaUpgradeToTheNextVersion(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	noop := func(context.Context, *sql.Tx) (int, error) { return 0, nil }
	if _, err := Execute(ctx, s, noop, &outbox.Message{Type: "T", Key: "k", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	next := SchemaVersion + 1
	saved := migrations
	migrations = append(migrations[:len(migrations):len(migrations)], migration{version: next, sql: func(table, _ string) string {
		return "ALTER TABLE " + table + " ADD COLUMN IF NOT EXISTS tenant VARCHAR(64) NOT NULL DEFAULT ''"
	}})
	upgradeSQL, sqlErr := UpgradeSQL(s.cfg.Table, SchemaVersion)
	err := s.EnsureSchema(ctx)
	v, verr := s.SchemaVersion(ctx)
	migrations = saved
	if sqlErr != nil || err != nil || verr != nil || v != next {
		t.Fatalf("upgrade: %v, %v; version %d (%v), want %d", sqlErr, err, v, verr, next)
	}
	var n int
	if err := s.DB().QueryRow("SELECT count(*) FROM " + s.table + " WHERE tenant = ''").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows with the new column's default (%v), want the 1 written before", n, err)
	}
	if !strings.Contains(upgradeSQL, "ADD COLUMN IF NOT EXISTS tenant") || strings.Contains(upgradeSQL, "CREATE TABLE IF NOT EXISTS "+s.table) {
		t.Fatalf("UpgradeSQL from %d:\n%s\nwant the next version's statements only", SchemaVersion, upgradeSQL)
	}
	var ve *SchemaVersionError
	if err := s.CheckSchema(ctx); !errors.As(err, &ve) || !errors.Is(err, outbox.ErrSchema) || ve.Version != next {
		t.Fatalf("CheckSchema of a newer table: %v, want a SchemaVersionError at %d", err, next)
	}
	if err := s.EnsureSchema(ctx); !errors.As(err, &ve) || !strings.Contains(err.Error(), "upgrade the binary") {
		t.Fatalf("EnsureSchema of a newer table: %v, want a SchemaVersionError", err)
	}
}

// Replicas starting together record one version.
func TestSchemaVersionConcurrentEnsure(t *testing.T) {
	s := testStore(t)
	if _, err := s.DB().Exec("DROP TABLE " + quote(s.cfg.Table+"_schema")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- s.EnsureSchema(context.Background()) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := s.DB().QueryRow("SELECT count(*) FROM " + quote(s.cfg.Table+"_schema")).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d version rows (%v), want 1", n, err)
	}
}
