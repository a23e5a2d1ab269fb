package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// SchemaVersion is the layout of the outbox table this package reads and writes. EnsureSchema
// brings a table of any earlier layout to it and records it in the table's version table
// (<table>_schema, beside the outbox); a database at a later version is refused.
const SchemaVersion = 1

// migration brings the outbox table from version-1 to version. MySQL commits each DDL
// statement by itself, so a migration cannot share a transaction with its version row: it must
// be idempotent (CREATE ... IF NOT EXISTS, ADD COLUMN IF NOT EXISTS on MariaDB, or a check of
// information_schema first), since a run cut short after it and before the row runs it again.
type migration struct {
	version int
	sql     func(table, keys string) string
}

// migrations are the layouts in order, the first creating the tables (the key-lock trigger is
// not one of them: EnsureSchema and UpgradeSQL make it after the last). Version n is
// migrations[n-1]; a new layout appends its statements here and raises SchemaVersion. A
// migration is never destructive within a major version.
var migrations = []migration{
	{version: 1, sql: schemaSQL},
}

// knownVersion is the newest version in migrations: SchemaVersion, unless a test appends one.
func knownVersion() int { return migrations[len(migrations)-1].version }

func versionDDL(vt string) string {
	return "CREATE TABLE IF NOT EXISTS " + vt + " (version INT NOT NULL PRIMARY KEY, applied_at DATETIME(6) NOT NULL) ENGINE=InnoDB"
}

// SchemaVersionError is the verdict on a table at a schema version this code does not know: a
// newer binary has upgraded it. It matches outbox.ErrSchema, so the relay's Start refuses it
// rather than write rows an older layout cannot describe.
type SchemaVersionError struct {
	Table   string // quoted
	Version int    // recorded in the database
	Known   int    // the newest this code knows
}

func (e *SchemaVersionError) Error() string {
	return fmt.Sprintf("mysql: table %s is at schema version %d; this outbox knows up to %d: upgrade the binary",
		e.Table, e.Version, e.Known)
}

// Is reports whether target is outbox.ErrSchema.
func (e *SchemaVersionError) Is(target error) bool { return target == outbox.ErrSchema }

// UpgradeSQL returns the statements that bring table from schema version from to SchemaVersion
// and record it, for migration tools (golang-migrate, goose, atlas): from 0 is everything,
// SchemaSQL's DDL and the version table; whatever from, it ends with the key-lock trigger's
// CREATE TRIGGER IF NOT EXISTS. It is what EnsureSchema runs, without the lock: apply it from
// one place.
func UpgradeSQL(table string, from int) (string, error) {
	if err := backend.CheckIdentifier("mysql", "Table", table); err != nil {
		return "", err
	}
	if known := knownVersion(); from < 0 || from > known {
		return "", fmt.Errorf("mysql: upgrade sql: %w", backend.InvalidArgument("from",
			fmt.Sprintf("version %d: this outbox knows versions 0 (nothing) to %d", from, known)))
	}
	vt := quote(table + "_schema")
	record := func(v int) string {
		return fmt.Sprintf("INSERT IGNORE INTO %s (version, applied_at) VALUES (%d, UTC_TIMESTAMP(6));\n", vt, v)
	}
	var b strings.Builder
	b.WriteString(versionDDL(vt) + ";\n")
	if from > 0 {
		// A table made before versions were recorded has no row for its own version.
		b.WriteString(record(from))
	}
	for _, m := range migrations[from:] {
		fmt.Fprintf(&b, "\n-- schema version %d\n", m.version)
		b.WriteString(strings.TrimRight(m.sql(quote(table), quote(table+"_keys")), ";\n") + ";\n")
		b.WriteString(record(m.version))
	}
	// The key-lock trigger belongs to every version; EnsureSchema makes it on every run, so a
	// table of any version that lacks it gains it.
	b.WriteString("\n-- the key-lock trigger (CREATE TRIGGER IF NOT EXISTS: MariaDB 10.1.4+, MySQL 8.0.29+)\n")
	b.WriteString(triggerSQL(quote(table), quote(table+"_keys"), quote(table+triggerSuffix), true) + ";\n")
	return b.String(), nil
}

// SchemaVersion returns the version of the outbox table's layout recorded in the database: 0
// when there is no table, 1 for a table made before versions were recorded (which EnsureSchema
// adopts as version 1), and an *outbox.SchemaError when the table is another table of that name.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("mysql: schema version: %w", err)
	}
	v, recorded, err := s.recordedVersion(ctx, s.db)
	if err != nil {
		return 0, fmt.Errorf("mysql: schema version %s: %w", s.table, err)
	}
	if recorded {
		return v, nil
	}
	return s.unrecordedVersion(ctx)
}

// unrecordedVersion is the version of a table with no version table: 0 when there is no table,
// 1 when it has the outbox's columns, an *outbox.SchemaError for another table of that name.
func (s *Store) unrecordedVersion(ctx context.Context) (int, error) {
	have, err := s.columnsOf(ctx, s.cfg.Table)
	if err != nil {
		return 0, fmt.Errorf("mysql: schema version %s: %w", s.table, err)
	}
	var se *outbox.SchemaError
	switch err := backend.CheckColumns("mysql", s.table, have, outboxColumns); {
	case errors.As(err, &se) && se.Problem == outbox.SchemaMissing:
		return 0, nil
	case err != nil:
		return 0, err
	}
	return 1, nil
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// recordedVersion reads the newest version in the version table; recorded is false when the
// version table does not exist.
func (s *Store) recordedVersion(ctx context.Context, q queryRower) (v int, recorded bool, err error) {
	err = q.QueryRowContext(ctx, `SELECT count(*) > 0 FROM information_schema.tables
WHERE table_schema = DATABASE() AND table_name = ?`, s.cfg.Table+"_schema").Scan(&recorded)
	if err != nil || !recorded {
		return 0, false, err
	}
	err = q.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM "+quote(s.cfg.Table+"_schema")).Scan(&v)
	return v, err == nil, err
}

// migrate brings the table to the newest known version on conn, which holds the schema lock.
func (s *Store) migrate(ctx context.Context, conn *sql.Conn) error {
	v, recorded, err := s.recordedVersion(ctx, conn)
	if err != nil {
		return err
	}
	if !recorded {
		if v, err = s.unrecordedVersion(ctx); err != nil {
			return err
		}
	}
	if known := knownVersion(); v > known {
		return &SchemaVersionError{Table: s.table, Version: v, Known: known}
	}
	vt := quote(s.cfg.Table + "_schema")
	if _, err := conn.ExecContext(ctx, versionDDL(vt)); err != nil {
		return err
	}
	record := func(v int) error {
		_, err := conn.ExecContext(ctx, "INSERT IGNORE INTO "+vt+" (version, applied_at) VALUES (?, UTC_TIMESTAMP(6))", v)
		return err
	}
	if !recorded && v > 0 {
		if err := record(v); err != nil { // adopt a table made before versions were recorded
			return err
		}
	}
	for _, m := range migrations[v:] {
		if _, err := conn.ExecContext(ctx, m.sql(s.table, s.keys)); err != nil {
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
	v, _, err := s.recordedVersion(ctx, s.db)
	if err != nil {
		return fmt.Errorf("mysql: check schema %s: %w", s.table, err)
	}
	if known := knownVersion(); v > known {
		return &SchemaVersionError{Table: s.table, Version: v, Known: known}
	}
	return nil
}
