package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// SchemaVersion is the layout of the outbox table this package reads and writes. EnsureSchema
// brings a table of any earlier layout to it and records it in the table's version table
// (<table>_schema, beside the outbox); a database at a later version is refused.
const SchemaVersion = 1

// migration brings the outbox table from version-1 to version. Its SQL must be safe to run in a
// transaction, and is run in one with the row recording version.
type migration struct {
	version int
	sql     func(schema, table string) string
}

// migrations are the layouts in order, the first creating the table. Version n is
// migrations[n-1]; a new layout appends its ALTERs here and raises SchemaVersion. A migration is
// never destructive within a major version: it adds columns with defaults and indexes, and
// drops nothing a binary of an earlier version of the same major still reads.
var migrations = []migration{
	{version: 1, sql: func(schema, table string) string { return schemaSQL(schema, table, false) }},
}

// knownVersion is the newest version in migrations: SchemaVersion, unless a test appends one.
func knownVersion() int { return migrations[len(migrations)-1].version }

// versionTable returns the quoted name of the table that records the outbox table's versions.
func versionTable(schema, table string) string {
	return pgx.Identifier{schema, indexName(table, "schema")}.Sanitize()
}

func versionDDL(vt string) string {
	return "CREATE TABLE IF NOT EXISTS " + vt + " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
}

// SchemaVersionError is the verdict on a table at a schema version this code does not know: a
// newer binary has upgraded it. It matches outbox.ErrSchema, so the relay's Start refuses it
// rather than write rows an older layout cannot describe.
type SchemaVersionError struct {
	Table   string // quoted schema.table
	Version int    // recorded in the database
	Known   int    // the newest this code knows
}

func (e *SchemaVersionError) Error() string {
	return fmt.Sprintf("postgres: table %s is at schema version %d; this outbox knows up to %d: upgrade the binary",
		e.Table, e.Version, e.Known)
}

// Is reports whether target is outbox.ErrSchema.
func (e *SchemaVersionError) Is(target error) bool { return target == outbox.ErrSchema }

// UpgradeSQL returns the DDL that brings the outbox table in schema from version from to
// SchemaVersion and records it, for migration tools (golang-migrate, goose, atlas): from 0 is
// everything, SchemaSQL's DDL and the version table. It is what EnsureSchema runs, without the
// lock: apply it from one place. Every statement is idempotent, so applying it twice is harmless.
func UpgradeSQL(schema, table string, from int) (string, error) {
	if err := checkIdentifier("Schema", schema); err != nil {
		return "", err
	}
	if err := checkIdentifier("Table", table); err != nil {
		return "", err
	}
	if known := knownVersion(); from < 0 || from > known {
		return "", fmt.Errorf("postgres: upgrade sql: %w", backend.InvalidArgument("from",
			fmt.Sprintf("version %d: this outbox knows versions 0 (nothing) to %d", from, known)))
	}
	vt := versionTable(schema, table)
	var b strings.Builder
	if from == 0 {
		fmt.Fprintf(&b, "CREATE SCHEMA IF NOT EXISTS %s;\n", pgx.Identifier{schema}.Sanitize())
	}
	b.WriteString(versionDDL(vt) + ";\n")
	if from > 0 {
		// A table made before versions were recorded has no row for its own version.
		fmt.Fprintf(&b, "INSERT INTO %s (version) VALUES (%d) ON CONFLICT DO NOTHING;\n", vt, from)
	}
	for _, m := range migrations[from:] {
		fmt.Fprintf(&b, "\n-- schema version %d\n", m.version)
		b.WriteString(m.sql(schema, table))
		fmt.Fprintf(&b, "INSERT INTO %s (version) VALUES (%d) ON CONFLICT DO NOTHING;\n", vt, m.version)
	}
	return b.String(), nil
}

// SchemaVersion returns the version of the outbox table's layout recorded in the database: 0
// when there is no table, 1 for a table made before versions were recorded (which EnsureSchema
// adopts as version 1), and an *outbox.SchemaError when the table is another table of that name.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", err)
	}
	v, recorded, err := s.recordedVersion(ctx, s.pool)
	if err != nil {
		return 0, fmt.Errorf("postgres: schema version %s: %w", s.table, err)
	}
	if recorded {
		return v, nil
	}
	var se *outbox.SchemaError
	switch err := s.checkColumns(ctx, s.pool); {
	case errors.As(err, &se) && se.Problem == outbox.SchemaMissing:
		return 0, nil
	case errors.Is(err, outbox.ErrSchema):
		return 0, err
	case err != nil:
		return 0, fmt.Errorf("postgres: schema version %s: %w", s.table, err)
	}
	return 1, nil
}

type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// recordedVersion reads the newest version in the version table; recorded is false when the
// version table does not exist.
func (s *Store) recordedVersion(ctx context.Context, q queryRower) (v int, recorded bool, err error) {
	vt := versionTable(s.cfg.Schema, s.cfg.Table)
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", vt).Scan(&recorded); err != nil || !recorded {
		return 0, false, err
	}
	err = q.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+vt).Scan(&v)
	return v, err == nil, err
}

// checkVersion is CheckSchema's version verdict: a *SchemaVersionError when the database is newer.
func (s *Store) checkVersion(ctx context.Context) error {
	v, _, err := s.recordedVersion(ctx, s.pool)
	if err != nil {
		return err
	}
	if known := knownVersion(); v > known {
		return &SchemaVersionError{Table: s.table, Version: v, Known: known}
	}
	return nil
}

// migrate brings the table to the newest known version on one connection holding the table's
// advisory lock for the whole run, each migration in a transaction with its version row, so a
// failure leaves the table at the last version recorded and the next run resumes there.
func (s *Store) migrate(ctx context.Context) (err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	key := lockKey(s.cfg.Schema, s.cfg.Table)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		conn.Release()
		return err
	}
	defer func() {
		// A session lock outlives the statement that failed; a connection whose unlock failed
		// goes back to no one, so closing it is what releases the lock.
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key); uerr != nil {
			_ = conn.Hijack().Close(context.WithoutCancel(ctx))
			return
		}
		conn.Release()
	}()
	return s.migrateLocked(ctx, conn)
}

func (s *Store) migrateLocked(ctx context.Context, conn *pgxpool.Conn) error {
	vt := versionTable(s.cfg.Schema, s.cfg.Table)
	v, recorded, err := s.recordedVersion(ctx, conn)
	if err != nil {
		return err
	}
	adopt := false
	if !recorded {
		// A table made before versions were recorded is version 1 if it has version 1's columns.
		var se *outbox.SchemaError
		switch err := s.checkColumns(ctx, conn); {
		case errors.As(err, &se) && se.Problem == outbox.SchemaMissing:
		case err != nil:
			return err
		default:
			v, adopt = 1, true
		}
	}
	if known := knownVersion(); v > known {
		return &SchemaVersionError{Table: s.table, Version: v, Known: known}
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the database even when the
		// schema exists, so only ask for it when the schema is missing.
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", s.cfg.Schema).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{s.cfg.Schema}.Sanitize()); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, versionDDL(vt)); err != nil {
			return err
		}
		if adopt {
			_, err := tx.Exec(ctx, "INSERT INTO "+vt+" (version) VALUES (1) ON CONFLICT DO NOTHING")
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range migrations[v:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql(s.cfg.Schema, s.cfg.Table)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+vt+" (version) VALUES ($1)", m.version)
			return err
		})
		if err != nil {
			return fmt.Errorf("schema version %d: %w", m.version, err)
		}
	}
	return nil
}
