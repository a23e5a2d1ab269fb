package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
)

// defaultListLimit is how many dead letters ListDead returns when the filter sets no Limit.
const defaultListLimit = 100

// Counts implements outbox.Inspector. Leased messages count as pending.
func (s *Store) Counts(ctx context.Context) (outbox.Counts, error) {
	if err := s.checkOpen(); err != nil {
		return outbox.Counts{}, fmt.Errorf("sqlite: counts: %w", err)
	}
	var (
		c      outbox.Counts
		oldest sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, `SELECT
		count(*) FILTER (WHERE status = 'pending'),
		count(*) FILTER (WHERE status = 'delivered'),
		count(*) FILTER (WHERE status = 'dead'),
		min(created_at) FILTER (WHERE status = 'pending')
		FROM `+s.q.table).Scan(&c.Pending, &c.Delivered, &c.Dead, &oldest)
	if err != nil {
		return outbox.Counts{}, fmt.Errorf("sqlite: counts: %w", err)
	}
	if oldest.Valid {
		c.OldestPending = time.UnixMilli(oldest.Int64).UTC()
	}
	return c, nil
}

// deadWhere returns the condition selecting the dead messages f matches, and its arguments.
func deadWhere(f outbox.DeadFilter) (string, []any) {
	where := `status = 'dead'`
	var args []any
	if len(f.IDs) > 0 {
		where += ` AND id IN (` + placeholders(len(f.IDs)) + `)`
		for _, id := range f.IDs {
			args = append(args, id)
		}
	}
	if f.Type != "" {
		where += ` AND type = ?`
		args = append(args, f.Type)
	}
	if f.Key != "" {
		where += ` AND key = ?`
		args = append(args, f.Key)
	}
	return where, args
}

func validateFilter(f outbox.DeadFilter) error {
	switch {
	case f.Limit < 0:
		return &outbox.ConfigError{Component: "sqlite", Field: "DeadFilter.Limit", Problem: "is negative"}
	case len(f.IDs) > 10000:
		return &outbox.ConfigError{Component: "sqlite", Field: "DeadFilter.IDs", Problem: "lists more than 10000 IDs"}
	}
	return nil
}

// ListDead implements outbox.Inspector: dead messages, oldest first, with why they died.
func (s *Store) ListDead(ctx context.Context, f outbox.DeadFilter) ([]outbox.DeadLetter, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("sqlite: list dead: %w", err)
	}
	if err := validateFilter(f); err != nil {
		return nil, fmt.Errorf("sqlite: list dead: %w", err)
	}
	limit := f.Limit
	if limit == 0 {
		limit = defaultListLimit
	}
	where, args := deadWhere(f)
	rows, err := s.db.QueryContext(ctx, `SELECT id, type, key, payload, result, headers, created_at, attempts,
		coalesce(last_error, ''), coalesce(dead_at, 0) FROM `+s.q.table+` WHERE `+where+` ORDER BY seq LIMIT ?`,
		append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list dead: %w", err)
	}
	defer rows.Close()
	var out []outbox.DeadLetter
	for rows.Next() {
		var (
			d               outbox.DeadLetter
			payload         string
			result, headers sql.NullString
			created, died   int64
		)
		if err := rows.Scan(&d.ID, &d.Type, &d.Key, &payload, &result, &headers, &created, &d.Attempts, &d.LastError, &died); err != nil {
			return nil, fmt.Errorf("sqlite: list dead: scan: %w", err)
		}
		// Shown as stored, even when corrupt: the operator needs to see what killed it.
		d.Payload = json.RawMessage(payload)
		if result.Valid {
			d.Result = json.RawMessage(result.String)
		}
		if headers.Valid {
			_ = json.Unmarshal([]byte(headers.String), &d.Headers) // corrupt headers: LastError says so
		}
		d.CreatedAt = time.UnixMilli(created).UTC()
		if died > 0 {
			d.DiedAt = time.UnixMilli(died).UTC()
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list dead: %w", err)
	}
	return out, nil
}

// Requeue implements outbox.Inspector: the dead messages f matches become pending, due now, with
// attempts reset; their last error is kept for the record. It wakes the relay.
func (s *Store) Requeue(ctx context.Context, f outbox.DeadFilter) (int, error) {
	n, err := s.changeDead(ctx, "requeue", f, `UPDATE `+s.q.table+` SET status = 'pending', attempts = 0,
		available_at = ?, lease_owner = NULL, dead_at = NULL WHERE `, time.Now().UnixMilli())
	if n > 0 {
		s.signal()
	}
	return n, err
}

// Purge implements outbox.Inspector: it deletes the dead messages f matches.
func (s *Store) Purge(ctx context.Context, f outbox.DeadFilter) (int, error) {
	return s.changeDead(ctx, "purge", f, `DELETE FROM `+s.q.table+` WHERE `)
}

// changeDead runs stmt (which ends in WHERE) on the dead messages f matches, at most f.Limit
// of them (oldest first) when set.
func (s *Store) changeDead(ctx context.Context, op string, f outbox.DeadFilter, stmt string, args ...any) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if err := validateFilter(f); err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	where, wargs := deadWhere(f)
	args = append(args, wargs...)
	if f.Limit > 0 {
		where = `seq IN (SELECT seq FROM ` + s.q.table + ` WHERE ` + where + ` ORDER BY seq LIMIT ?)`
		args = append(args, f.Limit)
	}
	res, err := s.execWrite(ctx, stmt+where, args...)
	if err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return int(n), nil
}
