package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// outboxColumns are the columns every layout of the outbox table has had since the first; a
// table missing one of them is another table of the same name.
var outboxColumns = []string{"id", "seq", "type", "key", "payload", "result", "headers", "status",
	"attempts", "available_at", "lease_owner", "lease_until", "last_error", "created_at",
	"delivered_at", "dead_at"}

// CheckSchema reports whether the outbox table exists with the outbox's columns at a schema
// version this code knows: an *outbox.SchemaError (errors.Is outbox.ErrSchema) naming what is
// missing when not, a *SchemaVersionError (also ErrSchema) when a newer binary has upgraded it,
// the connection's error when the database cannot be asked. The relay calls it at Start.
func (s *Store) CheckSchema(ctx context.Context) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("postgres: check schema: %w", err)
	}
	err := s.checkColumns(ctx, s.pool)
	if err == nil {
		err = s.checkVersion(ctx)
	}
	if err != nil && !errors.Is(err, outbox.ErrSchema) {
		return fmt.Errorf("postgres: check schema %s: %w", s.table, err)
	}
	return err
}

// checkColumns is CheckSchema's verdict on the columns, in one query on q (the pool, or the
// connection EnsureSchema holds its lock on, so a pool of one connection cannot deadlock): an
// *outbox.SchemaError, or the database's error unwrapped for the caller to name its operation.
func (s *Store) checkColumns(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}) error {
	rows, err := q.Query(ctx, `SELECT a.attname FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped`,
		s.cfg.Schema, s.cfg.Table)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		have[name] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return backend.CheckColumns("postgres", s.table, have, outboxColumns)
}
