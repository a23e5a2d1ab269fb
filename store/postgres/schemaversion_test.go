package postgres_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

// openBare opens a store over schema.outbox without ensuring its table.
func openBare(t *testing.T, schema string) *postgres.Store {
	t.Helper()
	s, err := postgres.New(context.Background(), postgres.Config{URL: testURL(), Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// recorded returns the versions in the version table, oldest first.
func recorded(t *testing.T, schema string) []int {
	t.Helper()
	rows, err := adminPool(t).Query(context.Background(), "SELECT version FROM "+postgres.VersionTable(schema, "outbox")+" ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func wantVersion(t *testing.T, s *postgres.Store, want int) {
	t.Helper()
	v, err := s.SchemaVersion(context.Background())
	if err != nil || v != want {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, want)
	}
}

func TestSchemaVersionFresh(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := openBare(t, schema)
	wantVersion(t, s, 0)
	for range 2 {
		if err := s.EnsureSchema(context.Background()); err != nil {
			t.Fatal(err)
		}
		wantVersion(t, s, postgres.SchemaVersion)
		if got := recorded(t, schema); len(got) != 1 || got[0] != 1 {
			t.Fatalf("recorded versions %v, want [1]", got)
		}
	}
}

// A table made by SchemaSQL alone, as before versions were recorded, is adopted as version 1.
func TestSchemaVersionAdoptsUnversionedTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema := newSchema(t)
	ddl, err := postgres.SchemaSQL(schema, "outbox")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminPool(t).Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	s := openBare(t, schema)
	wantVersion(t, s, 1)
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema of an unversioned table: %v", err)
	}
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if got := recorded(t, schema); len(got) != 1 || got[0] != 1 {
		t.Fatalf("recorded versions %v, want [1]", got)
	}
}

// A foreign table of the outbox's name is neither adopted nor altered.
func TestSchemaVersionRefusesForeignTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema := newSchema(t)
	if _, err := adminPool(t).Exec(ctx, "CREATE TABLE "+pgx.Identifier{schema, "outbox"}.Sanitize()+" (id uuid, status text)"); err != nil {
		t.Fatal(err)
	}
	s := openBare(t, schema)
	if err := s.EnsureSchema(ctx); !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "is not an outbox table") {
		t.Fatalf("EnsureSchema over a foreign table: %v", err)
	}
	if _, err := s.SchemaVersion(ctx); !errors.Is(err, outbox.ErrSchema) {
		t.Fatalf("SchemaVersion of a foreign table: %v", err)
	}
	var exists bool
	if err := adminPool(t).QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", postgres.VersionTable(schema, "outbox")).Scan(&exists); err != nil || exists {
		t.Fatalf("version table created beside a foreign table: %v, %v", exists, err)
	}
}

func TestSchemaVersionNewerRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema := newSchema(t)
	s := openBare(t, schema)
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := adminPool(t).Exec(ctx, "INSERT INTO "+postgres.VersionTable(schema, "outbox")+" (version) VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	want := "is at schema version 3; this outbox knows up to 1: upgrade the binary"
	for name, check := range map[string]func(context.Context) error{"EnsureSchema": s.EnsureSchema, "CheckSchema": s.CheckSchema} {
		err := check(ctx)
		var ve *postgres.SchemaVersionError
		if !errors.Is(err, outbox.ErrSchema) || !errors.As(err, &ve) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s at a newer version: %v, want ErrSchema saying %q", name, err, want)
		}
	}
	wantVersion(t, s, 3)
}

func TestUpgradeSQLFromNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema := newSchema(t) + "_sql" // UpgradeSQL from 0 creates the schema too
	t.Cleanup(func() {
		_, _ = adminPool(t).Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	ddl, err := postgres.UpgradeSQL(schema, "outbox", 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent, as a migration tool may run it again
		if _, err := adminPool(t).Exec(ctx, ddl); err != nil {
			t.Fatalf("apply UpgradeSQL(0): %v\n%s", err, ddl)
		}
	}
	s := openBare(t, schema)
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after UpgradeSQL(0): %v", err)
	}
	wantVersion(t, s, postgres.SchemaVersion)
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if got := recorded(t, schema); len(got) != 1 || got[0] != 1 {
		t.Fatalf("recorded versions %v, want [1]", got)
	}
}

func TestUpgradeSQLArguments(t *testing.T) {
	t.Parallel()
	for _, from := range []int{-1, postgres.SchemaVersion + 1} {
		if _, err := postgres.UpgradeSQL("public", "outbox", from); !errors.Is(err, outbox.ErrInvalidArgument) {
			t.Errorf("UpgradeSQL from %d: %v, want ErrInvalidArgument", from, err)
		}
	}
	if _, err := postgres.UpgradeSQL("public", "", 0); err == nil {
		t.Error("UpgradeSQL with no table: no error")
	}
	ddl, err := postgres.UpgradeSQL("public", "outbox", postgres.SchemaVersion)
	if err != nil || strings.Contains(ddl, "CREATE TABLE IF NOT EXISTS \"public\".\"outbox\" ") {
		t.Errorf("UpgradeSQL from the current version = %q, %v; want only the version table", ddl, err)
	}
}

// The next version's code over today's layout: a table built by this version, then a store whose
// migration list has a version 2, EnsureSchema run by two stores at once. Not parallel: it
// changes the package's migration list.
func TestSchemaUpgradeToNextVersion(t *testing.T) {
	ctx := context.Background()
	schema := newSchema(t)
	old := openStore(t, postgres.Config{URL: testURL(), Schema: schema})
	add(t, old, msg(t, "order.created", "k", map[string]int{"n": 1}))

	// Not idempotent on purpose: ADD COLUMN without IF NOT EXISTS fails if run twice.
	remove := postgres.AddMigration(postgres.SchemaVersion+1, func(schema, table string) string {
		return "ALTER TABLE " + pgx.Identifier{schema, table}.Sanitize() + " ADD COLUMN note text NOT NULL DEFAULT '';\n"
	})
	t.Cleanup(remove)
	next := postgres.SchemaVersion + 1
	if err := old.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema of the older layout by the newer code: %v", err)
	}
	stores := []*postgres.Store{openBare(t, schema), openBare(t, schema)}
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.EnsureSchema(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("store %d: EnsureSchema: %v", i, err)
		}
	}
	if err := stores[0].EnsureSchema(ctx); err != nil {
		t.Fatalf("EnsureSchema again: %v", err)
	}
	wantVersion(t, stores[0], next)
	if got := recorded(t, schema); len(got) != 2 || got[0] != 1 || got[1] != next {
		t.Fatalf("recorded versions %v, want [1 %d]", got, next)
	}
	var n int
	if err := adminPool(t).QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "outbox"}.Sanitize()+" WHERE note = ''").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows with the new column: %d, %v; want the one written before", n, err)
	}

	// UpgradeSQL from version 1 is the same upgrade for a migration tool, over an unversioned table.
	other := newSchema(t)
	v1, err := postgres.SchemaSQL(other, "outbox")
	if err != nil {
		t.Fatal(err)
	}
	up, err := postgres.UpgradeSQL(other, "outbox", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminPool(t).Exec(ctx, v1+up); err != nil {
		t.Fatalf("apply UpgradeSQL(1): %v\n%s", err, up)
	}
	if got := recorded(t, other); len(got) != 2 || got[0] != 1 || got[1] != next {
		t.Fatalf("recorded versions after UpgradeSQL(1) %v, want [1 %d]", got, next)
	}

	// Back to today's code: the database is newer than it knows.
	remove()
	if err := stores[0].CheckSchema(ctx); !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "upgrade the binary") {
		t.Fatalf("CheckSchema by older code: %v", err)
	}
}

// EnsureSchema holds its lock on one connection and asks everything on it: a pool of one
// connection, adopting an unversioned table, does not wait on itself.
func TestSchemaVersionOneConnectionPool(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	schema := newSchema(t)
	ddl, err := postgres.SchemaSQL(schema, "outbox")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminPool(t).Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	pcfg, err := pgxpool.ParseConfig(testURL())
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s, err := postgres.New(ctx, postgres.Config{Pool: pool, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatalf("EnsureSchema on a pool of one: %v", err)
	}
	wantVersion(t, s, 1)
}
