package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// outboxColumns are the columns the outbox table has; a table missing one of them is another
// table of the same name.
var outboxColumns = []string{"seq", "id", "type", "key", "payload", "result", "headers", "created_at",
	"status", "blocked", "attempts", "available_at", "lease_owner", "last_error", "delivered_at", "dead_at"}

// CheckSchema reports whether the outbox table exists with the outbox's columns at a schema
// version this code knows: an *outbox.SchemaError (errors.Is outbox.ErrSchema) naming what is
// missing, or a *SchemaVersionError for a table a newer binary upgraded. The relay calls it at
// Start.
func (s *Store) CheckSchema(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("sqlite: check schema: %w", outbox.ErrClosed)
	}
	if err := s.checkColumns(ctx, s.db); err != nil {
		return err
	}
	if err := s.checkVersion(ctx); err != nil {
		var ve *SchemaVersionError
		if errors.As(err, &ve) {
			return err
		}
		return fmt.Errorf("sqlite: check schema %s: %w", s.cfg.Table, err)
	}
	return nil
}

// checkColumns is CheckSchema's verdict on the table's columns.
func (s *Store) checkColumns(ctx context.Context, q querier) error {
	rows, err := q.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", s.cfg.Table)
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
