package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Counts reports how many messages are pending (including leased), delivered (kept with
// KeepDelivered) and dead, and when the oldest pending one was created. It counts the whole
// table: meant for dashboards and the CLI, not for a hot loop.
func (s *Store) Counts(ctx context.Context) (outbox.Counts, error) {
	if err := s.checkOpen(); err != nil {
		return outbox.Counts{}, fmt.Errorf("postgres: counts: %w", err)
	}
	var c outbox.Counts
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, s.q.counts).Scan(&c.Pending, &c.Delivered, &c.Dead, &oldest); err != nil {
		return outbox.Counts{}, fmt.Errorf("postgres: counts: %w", err)
	}
	if oldest != nil {
		c.OldestPending = oldest.UTC()
	}
	if s.wal != nil {
		s.countsWAL(&c)
	}
	return c, nil
}

// deadWhere builds the WHERE clause selecting the dead messages f names, with its arguments
// numbered from $1.
func deadWhere(f outbox.DeadFilter) (string, []any) {
	conds := []string{"status = 'dead'"}
	var args []any
	if len(f.IDs) > 0 {
		args = append(args, backend.SettleableIDs(f.IDs))
		conds = append(conds, fmt.Sprintf("id = ANY($%d::uuid[])", len(args)))
	}
	if f.Type != "" {
		args = append(args, f.Type)
		conds = append(conds, fmt.Sprintf("type = $%d", len(args)))
	}
	if f.Key != "" {
		args = append(args, f.Key)
		conds = append(conds, fmt.Sprintf("key = $%d", len(args)))
	}
	return strings.Join(conds, " AND "), args
}

// ListDead returns dead messages with their last error and time of death, oldest first; at most
// f.Limit (default 100). A dead row whose headers are corrupt is listed without them.
func (s *Store) ListDead(ctx context.Context, f outbox.DeadFilter) ([]outbox.DeadLetter, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("postgres: list dead: %w", err)
	}
	if f.Limit < 0 {
		return nil, fmt.Errorf("postgres: list dead: %w", &outbox.ConfigError{Component: "postgres", Field: "Limit", Problem: "is negative"})
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	where, args := deadWhere(f)
	args = append(args, limit)
	query := fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY seq LIMIT $%d", s.q.deadColumns, s.q.deadFrom, where, len(args))
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list dead: %w", err)
	}
	defer rows.Close()
	var out []outbox.DeadLetter
	for rows.Next() {
		var (
			d               outbox.DeadLetter
			payload         string
			result, headers *string
		)
		if err := rows.Scan(&d.ID, &d.Type, &d.Key, &payload, &result, &headers, &d.CreatedAt, &d.Attempts, &d.LastError, &d.DiedAt); err != nil {
			return nil, fmt.Errorf("postgres: list dead: %w", err)
		}
		d.Payload = []byte(payload)
		if result != nil {
			d.Result = []byte(*result)
		}
		if headers != nil {
			// Corrupt headers are why some rows died; list them anyway so they can be purged.
			_ = json.Unmarshal([]byte(*headers), &d.Headers)
		}
		d.CreatedAt, d.DiedAt = d.CreatedAt.UTC(), d.DiedAt.UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list dead: %w", err)
	}
	return out, nil
}

// Requeue makes the selected dead messages pending again, due now, with attempts reset (the
// last error is kept for the record). A positive f.Limit bounds how many, oldest first.
func (s *Store) Requeue(ctx context.Context, f outbox.DeadFilter) (int, error) {
	return s.editDead(ctx, "requeue", s.q.requeueSet, f)
}

// Purge deletes the selected dead messages. A positive f.Limit bounds how many, oldest first.
func (s *Store) Purge(ctx context.Context, f outbox.DeadFilter) (int, error) {
	return s.editDead(ctx, "purge", s.q.purge, f)
}

func (s *Store) editDead(ctx context.Context, op, stmt string, f outbox.DeadFilter) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	if f.Limit < 0 {
		return 0, fmt.Errorf("postgres: %s: %w", op, &outbox.ConfigError{Component: "postgres", Field: "Limit", Problem: "is negative"})
	}
	where, args := deadWhere(f)
	query := stmt + " WHERE " + where
	if f.Limit > 0 {
		args = append(args, f.Limit)
		query = fmt.Sprintf("%s WHERE id IN (SELECT id FROM %s WHERE %s ORDER BY seq LIMIT $%d FOR UPDATE) AND status = 'dead'",
			stmt, s.q.deadFrom, where, len(args))
	}
	tag, err := s.pool.Exec(ctx, query, args...)
	if s.wal != nil {
		// A requeued message is due now, and a purged dead head frees its key's next ones.
		s.wal.tableDueBy(time.Time{})
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	return int(tag.RowsAffected()), nil
}
