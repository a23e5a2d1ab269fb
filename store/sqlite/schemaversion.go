package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// SchemaVersion is the layout of the outbox table this package reads and writes. EnsureSchema
// brings a table of any earlier layout to it and records it in the table's version table
// (<table>_schema, beside the outbox); a database at a later version is refused.
const SchemaVersion = 1

// migration brings the outbox table from version-1 to version. EnsureSchema runs it in its
// write transaction, with the row recording version.
type migration struct {
	version int
	sql     func(table string) string
}

// migrations are the layouts in order, the first creating the table. Version n is
// migrations[n-1]; a new layout appends its statements here and raises SchemaVersion. A
// migration is never destructive within a major version: it adds columns with defaults, indexes
// and triggers, and drops nothing a binary of an earlier version of the same major still reads.
var migrations = []migration{
	{version: 1, sql: schema},
}

// knownVersion is the newest version in migrations: SchemaVersion, unless a test appends one.
func knownVersion() int { return migrations[len(migrations)-1].version }

// versionTable is the quoted name of the table that records the outbox table's versions.
func versionTable(table string) string { return quote(table + "_schema") }

func versionDDL(vt string) string {
	return "CREATE TABLE IF NOT EXISTS " + vt + " (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT"
}

// SchemaVersionError is the verdict on a table at a schema version this code does not know: a
// newer binary has upgraded it. It matches outbox.ErrSchema, so the relay's Start refuses it
// rather than write rows an older layout cannot describe.
type SchemaVersionError struct {
	Table   string
	Version int // recorded in the database
	Known   int // the newest this code knows
}

func (e *SchemaVersionError) Error() string {
	return fmt.Sprintf("sqlite: table %s is at schema version %d; this outbox knows up to %d: upgrade the binary",
		e.Table, e.Version, e.Known)
}

// Is reports whether target is outbox.ErrSchema.
func (e *SchemaVersionError) Is(target error) bool { return target == outbox.ErrSchema }

// UpgradeSQL returns the statements that bring table from schema version from to SchemaVersion
// and record it, for migration tools (golang-migrate, goose, atlas): from 0 is everything,
// SchemaSQL's DDL and the version table. It is what EnsureSchema runs. Apply it once per
// version, as migration tools do: SchemaSQL's statements and the version rows are idempotent,
// but SQLite has no ADD COLUMN IF NOT EXISTS for a later version's columns.
func UpgradeSQL(table string, from int) (string, error) {
	if err := checkTable(table); err != nil {
		return "", err
	}
	if known := knownVersion(); from < 0 || from > known {
		return "", fmt.Errorf("sqlite: upgrade sql: %w", backend.InvalidArgument("from",
			fmt.Sprintf("version %d: this outbox knows versions 0 (nothing) to %d", from, known)))
	}
	vt := versionTable(table)
	record := func(v int) string {
		return fmt.Sprintf("INSERT OR IGNORE INTO %s (version, applied_at) VALUES (%d, CAST(unixepoch('subsec') * 1000 AS INTEGER));\n", vt, v)
	}
	var b strings.Builder
	b.WriteString(versionDDL(vt) + ";\n")
	if from > 0 {
		// A table made before versions were recorded has no row for its own version.
		b.WriteString(record(from))
	}
	for _, m := range migrations[from:] {
		fmt.Fprintf(&b, "\n-- schema version %d\n", m.version)
		b.WriteString(m.sql(table))
		b.WriteString(record(m.version))
	}
	return b.String(), nil
}

// SchemaVersion returns the version of the outbox table's layout recorded in the database: 0
// when there is no table, 1 for a table made before versions were recorded (which EnsureSchema
// adopts as version 1), and an *outbox.SchemaError when the table is another table of that name.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("sqlite: schema version: %w", err)
	}
	v, recorded, err := recordedVersion(ctx, s.db, s.cfg.Table)
	if err != nil {
		return 0, fmt.Errorf("sqlite: schema version %s: %w", s.cfg.Table, err)
	}
	if recorded {
		return v, nil
	}
	var se *outbox.SchemaError
	switch err := s.checkColumns(ctx, s.db); {
	case errors.As(err, &se) && se.Problem == outbox.SchemaMissing:
		return 0, nil
	case err != nil:
		return 0, err
	}
	return 1, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// recordedVersion reads the newest version in the version table; recorded is false when the
// version table does not exist.
func recordedVersion(ctx context.Context, q querier, table string) (v int, recorded bool, err error) {
	err = q.QueryRowContext(ctx, "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?", table+"_schema").Scan(&recorded)
	if err != nil || !recorded {
		return 0, false, err
	}
	err = q.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM "+versionTable(table)).Scan(&v)
	return v, err == nil, err
}

// migrate brings the table to the newest known version inside tx, EnsureSchema's write
// transaction: SQLite has one writer at a time, so concurrent EnsureSchema calls take turns and
// the second finds the work done.
func (s *Store) migrate(ctx context.Context, tx *sql.Tx) error {
	table := s.cfg.Table
	v, recorded, err := recordedVersion(ctx, tx, table)
	if err != nil {
		return err
	}
	adopt := false
	if !recorded {
		// A table made before versions were recorded is version 1 if it has version 1's columns.
		var se *outbox.SchemaError
		switch err := s.checkColumns(ctx, tx); {
		case errors.As(err, &se) && se.Problem == outbox.SchemaMissing:
		case err != nil:
			return err
		default:
			v, adopt = 1, true
		}
	}
	if known := knownVersion(); v > known {
		return &SchemaVersionError{Table: table, Version: v, Known: known}
	}
	vt := versionTable(table)
	if _, err := tx.ExecContext(ctx, versionDDL(vt)); err != nil {
		return err
	}
	record := func(v int) error {
		_, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO "+vt+" (version, applied_at) VALUES (?, ?)", v, time.Now().UnixMilli())
		return err
	}
	if adopt {
		if err := record(1); err != nil {
			return err
		}
	}
	for _, m := range migrations[v:] {
		if _, err := tx.ExecContext(ctx, m.sql(table)); err != nil {
			return fmt.Errorf("schema version %d: %w", m.version, err)
		}
		if err := record(m.version); err != nil {
			return fmt.Errorf("schema version %d: %w", m.version, err)
		}
	}
	return nil
}

// checkVersion is CheckSchema's version verdict: a *SchemaVersionError when the database is newer.
func (s *Store) checkVersion(ctx context.Context) error {
	v, _, err := recordedVersion(ctx, s.db, s.cfg.Table)
	if err != nil {
		return err
	}
	if known := knownVersion(); v > known {
		return &SchemaVersionError{Table: s.cfg.Table, Version: v, Known: known}
	}
	return nil
}
