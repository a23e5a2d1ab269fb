package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox/store/postgres"
)

// migrate says the schema version it leaves, version --store shows a database's, and a database
// upgraded by a newer binary is refused with what to do.
func TestMigrateAndVersionShowTheSchemaVersion(t *testing.T) {
	ctx := context.Background()
	schema := pgSchema(t, ctx)
	url := postgresURL()
	name := url + " (" + schema + ".outbox)"
	cli := func(args ...string) (int, string, string) {
		return runCLI(t, nil, append(args, "--store", url, "--schema", schema)...)
	}
	if code, out, stderr := cli("version"); code != 0 || !strings.Contains(out, name+": no outbox table (schema version 0): run outbox migrate") {
		t.Fatalf("version before migrate: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	for _, want := range []string{
		"created the table and indexes of " + name + " at schema version 1: the schema is up to date",
		name + " exists at schema version 1: the schema is up to date",
	} {
		if code, out, stderr := cli("migrate"); code != 0 || strings.TrimSpace(out) != want {
			t.Errorf("migrate: exit %d, stdout %q, stderr %q: want %q", code, out, stderr, want)
		}
	}
	code, out, stderr := cli("version")
	if code != 0 || !strings.Contains(out, "schema versions: PostgreSQL 1, MySQL 1, SQLite 1, MongoDB 1") || !strings.Contains(out, name+": schema version 1, up to date") {
		t.Fatalf("version: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	admin, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	vt := pgx.Identifier{schema, "outbox_schema"}.Sanitize()
	if _, err := admin.Exec(ctx, "INSERT INTO "+vt+" (version) VALUES (9)"); err != nil {
		t.Fatal(err)
	}
	want := "is at schema version 9; this outbox knows up to 1: upgrade the binary"
	if code, _, stderr := cli("migrate"); code == 0 || !strings.Contains(stderr, want) {
		t.Errorf("migrate of a newer database: exit %d, stderr %q: want %q", code, stderr, want)
	}
	if code, out, _ := cli("version"); code != 0 || !strings.Contains(out, name+": schema version 9; this outbox knows up to 1: upgrade the binary") {
		t.Errorf("version of a newer database: exit %d, stdout %q", code, out)
	}
}

// A table made before versions were recorded (SchemaSQL alone) is found at version 1 and recorded.
func TestMigrateAdoptsAnUnversionedTable(t *testing.T) {
	ctx := context.Background()
	schema := pgSchema(t, ctx)
	admin, err := pgxpool.New(ctx, postgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ddl, err := postgres.SchemaSQL(schema, "outbox")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	name := postgresURL() + " (" + schema + ".outbox)"
	code, out, stderr := runCLI(t, nil, "migrate", "--store", postgresURL(), "--schema", schema)
	if want := name + " exists at schema version 1: the schema is up to date"; code != 0 || strings.TrimSpace(out) != want {
		t.Fatalf("migrate over an unversioned table: exit %d, stdout %q, stderr %q: want %q", code, out, stderr, want)
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "outbox_schema"}.Sanitize()+" WHERE version = 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("version 1 recorded %d times, %v", n, err)
	}
}

// --print-sql --from prints what upgrades a table at that version; --print-sql alone, everything,
// which a migration tool applies to make a table migrate and the relay accept.
func TestMigratePrintSQLFrom(t *testing.T) {
	ctx := context.Background()
	code, out, stderr := runCLI(t, nil, "migrate", "--print-sql", "--from", "1", "--schema", "app")
	if code != 0 || !strings.Contains(out, `CREATE TABLE IF NOT EXISTS "app"."outbox_schema"`) || strings.Contains(out, `"app"."outbox" (`) {
		t.Errorf("--print-sql --from 1: exit %d, stderr %q, stdout:\n%s", code, stderr, out)
	}
	schema := pgSchema(t, ctx)
	code, out, stderr = runCLI(t, nil, "migrate", "--print-sql", "--schema", schema)
	if code != 0 {
		t.Fatalf("--print-sql: exit %d, stderr %q", code, stderr)
	}
	admin, err := pgxpool.New(ctx, postgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec(ctx, out); err != nil {
		t.Fatalf("apply --print-sql: %v\n%s", err, out)
	}
	name := postgresURL() + " (" + schema + ".outbox)"
	if code, out, _ := runCLI(t, nil, "version", "--store", postgresURL(), "--schema", schema); code != 0 || !strings.Contains(out, name+": schema version 1, up to date") {
		t.Errorf("version after applying --print-sql: exit %d, stdout %q", code, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"migrate", "--from", "1", "--store", postgresURL()}, "--from goes with --print-sql"},
		{[]string{"migrate", "--print-sql", "--from", "2"}, "--from: version 2: this outbox knows versions 0 (nothing) to 1"},
		{[]string{"migrate", "--print-sql", "--from", "1", "--store", "mongodb://127.0.0.1:1/db"}, "--from: mongodb has no SQL to print"},
		{[]string{"migrate", "--print-sql", "--from", "2", "--store", "mysql://u@127.0.0.1:1/db"}, "--from: version 2: this outbox knows versions 0 (nothing) to 1"},
		{[]string{"migrate", "--print-sql", "--from", "2", "--store", "sqlite:x.db"}, "--from: version 2: this outbox knows versions 0 (nothing) to 1"},
	} {
		if code, _, stderr := runCLI(t, nil, tc.args...); code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q: want %q", tc.args, code, stderr, tc.want)
		}
	}
}

// SQLite records its schema version too: migrate and version say it, and --print-sql --from 1
// prints only the version table (nothing upgrades version 1 yet).
func TestMigrateAndVersionOnSQLite(t *testing.T) {
	url := "sqlite:" + filepath.Join(t.TempDir(), "app.db")
	if code, out, _ := runCLI(t, nil, "version", "--store", url); code != 0 || !strings.Contains(out, "no outbox table (schema version 0): run outbox migrate") {
		t.Errorf("version before migrate: exit %d, stdout %q", code, out)
	}
	if code, out, stderr := runCLI(t, nil, "migrate", "--store", url); code != 0 || !strings.Contains(out, "at schema version 1") {
		t.Errorf("migrate: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if code, out, _ := runCLI(t, nil, "version", "--store", url); code != 0 || !strings.Contains(out, "(outbox): schema version 1, up to date") {
		t.Errorf("version after migrate: exit %d, stdout %q", code, out)
	}
	code, out, stderr := runCLI(t, nil, "migrate", "--print-sql", "--from", "1", "--store", url)
	if code != 0 || !strings.Contains(out, `CREATE TABLE IF NOT EXISTS "outbox_schema"`) || strings.Contains(out, `CREATE TABLE IF NOT EXISTS "outbox" (`) {
		t.Errorf("--print-sql --from 1: exit %d, stderr %q, stdout:\n%s", code, stderr, out)
	}
}

// MySQL's --print-sql --from 1 prints only the version table, nothing of version 1's DDL.
func TestMigratePrintSQLFromOnMySQL(t *testing.T) {
	code, out, stderr := runCLI(t, nil, "migrate", "--print-sql", "--from", "1", "--store", "mysql://u@127.0.0.1:1/db")
	if code != 0 || !strings.Contains(out, "CREATE TABLE IF NOT EXISTS `outbox_schema`") || strings.Contains(out, "CREATE TABLE IF NOT EXISTS `outbox` (") {
		t.Errorf("--print-sql --from 1: exit %d, stderr %q, stdout:\n%s", code, stderr, out)
	}
}
