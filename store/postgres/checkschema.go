package postgres

import (
	"context"
	"fmt"

	"github.com/txoutbox/outbox/backend"
)

// outboxColumns are the columns every layout of the outbox table has had since the first; a
// table missing one of them is another table of the same name.
var outboxColumns = []string{"id", "seq", "type", "key", "payload", "result", "headers", "status",
	"attempts", "available_at", "lease_owner", "lease_until", "last_error", "created_at",
	"delivered_at", "dead_at"}

// CheckSchema reports, in one query, whether the outbox table exists with the outbox's columns:
// an *outbox.SchemaError (errors.Is outbox.ErrSchema) naming what is missing when not, the
// connection's error when the database cannot be asked. The relay calls it at Start.
func (s *Store) CheckSchema(ctx context.Context) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("postgres: check schema: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT a.attname FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped`,
		s.cfg.Schema, s.cfg.Table)
	if err != nil {
		return fmt.Errorf("postgres: check schema %s: %w", s.table, err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("postgres: check schema %s: %w", s.table, err)
		}
		have[name] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: check schema %s: %w", s.table, err)
	}
	return backend.CheckColumns("postgres", s.table, have, outboxColumns)
}
