package sqlite

import (
	"context"
	"fmt"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// outboxColumns are the columns the outbox table has; a table missing one of them is another
// table of the same name.
var outboxColumns = []string{"seq", "id", "type", "key", "payload", "result", "headers", "created_at",
	"status", "blocked", "attempts", "available_at", "lease_owner", "last_error", "delivered_at", "dead_at"}

// CheckSchema reports whether the outbox table exists with the outbox's columns: an
// *outbox.SchemaError (errors.Is outbox.ErrSchema) naming what is missing when not. The relay
// calls it at Start.
func (s *Store) CheckSchema(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("sqlite: check schema: %w", outbox.ErrClosed)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", s.cfg.Table)
	if err != nil {
		return fmt.Errorf("sqlite: check schema %s: %w", s.cfg.Table, err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return fmt.Errorf("sqlite: check schema %s: %w", s.cfg.Table, err)
		}
		have[name] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: check schema %s: %w", s.cfg.Table, err)
	}
	return backend.CheckColumns("sqlite", s.cfg.Table, have, outboxColumns)
}
