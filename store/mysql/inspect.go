package mysql

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
)

// maxFilterIDs bounds the IDs one DeadFilter may list.
const maxFilterIDs = 10000

// Counts implements outbox.Inspector. Leased messages count as pending.
func (s *Store) Counts(ctx context.Context) (outbox.Counts, error) {
	if err := s.checkOpen(); err != nil {
		return outbox.Counts{}, fmt.Errorf("mysql: counts: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT status, COUNT(*), MIN(created_at) FROM "+s.table+" GROUP BY status")
	if err != nil {
		return outbox.Counts{}, fmt.Errorf("mysql: counts: %w", s.explain(err))
	}
	defer rows.Close()
	var c outbox.Counts
	for rows.Next() {
		var (
			status string
			n      int64
			oldest sql.NullTime
		)
		if err := rows.Scan(&status, &n, &oldest); err != nil {
			return outbox.Counts{}, fmt.Errorf("mysql: counts: %w", err)
		}
		switch outbox.Status(status) {
		case outbox.StatusPending:
			c.Pending = n
			if oldest.Valid {
				c.OldestPending = oldest.Time.UTC()
			}
		case outbox.StatusDelivered:
			c.Delivered = n
		case outbox.StatusDead:
			c.Dead = n
		}
	}
	if err := rows.Err(); err != nil {
		return outbox.Counts{}, fmt.Errorf("mysql: counts: %w", err)
	}
	return c, nil
}

// deadWhere returns the condition selecting the dead messages f matches, and its arguments.
func deadWhere(f outbox.DeadFilter) (string, []any) {
	where := "status = 'dead'"
	var args []any
	if len(f.IDs) > 0 {
		where += " AND id IN (" + marks(len(f.IDs)) + ")"
		for _, id := range f.IDs {
			args = append(args, id)
		}
	}
	if f.Type != "" {
		where += " AND type = ?"
		args = append(args, f.Type)
	}
	if f.Key != "" {
		where += " AND msg_key = ?"
		args = append(args, f.Key)
	}
	return where, args
}

func validateFilter(f outbox.DeadFilter) error {
	switch {
	case f.Limit < 0:
		return &outbox.ConfigError{Component: "mysql", Field: "DeadFilter.Limit", Problem: "is negative"}
	case len(f.IDs) > maxFilterIDs:
		return &outbox.ConfigError{Component: "mysql", Field: "DeadFilter.IDs", Problem: fmt.Sprintf("lists more than %d IDs", maxFilterIDs)}
	}
	return nil
}

// ListDead implements outbox.Inspector: dead messages, oldest first, with why they died.
func (s *Store) ListDead(ctx context.Context, f outbox.DeadFilter) ([]outbox.DeadLetter, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("mysql: list dead: %w", err)
	}
	if err := validateFilter(f); err != nil {
		return nil, fmt.Errorf("mysql: list dead: %w", err)
	}
	limit := f.Limit
	if limit == 0 {
		limit = defaultListSize
	}
	where, args := deadWhere(f)
	rows, err := s.db.QueryContext(ctx, "SELECT id, type, msg_key, payload, result, headers, created_at, attempts,"+
		" COALESCE(last_error, ''), COALESCE(dead_at, created_at) FROM "+s.table+" WHERE "+where+" ORDER BY seq LIMIT ?",
		append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("mysql: list dead: %w", s.explain(err))
	}
	defer rows.Close()
	var out []outbox.DeadLetter
	for rows.Next() {
		var (
			d               outbox.DeadLetter
			payload         string
			result, headers sql.NullString
			died            time.Time
		)
		if err := rows.Scan(&d.ID, &d.Type, &d.Key, &payload, &result, &headers, &d.CreatedAt, &d.Attempts, &d.LastError, &died); err != nil {
			return nil, fmt.Errorf("mysql: list dead: scan: %w", err)
		}
		// Shown as stored, even when corrupt: the operator needs to see what killed it.
		d.Payload = json.RawMessage(payload)
		if result.Valid {
			d.Result = json.RawMessage(result.String)
		}
		if headers.Valid {
			_ = json.Unmarshal([]byte(headers.String), &d.Headers) // corrupt headers: LastError says so
		}
		d.CreatedAt, d.DiedAt = d.CreatedAt.UTC(), died.UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysql: list dead: %w", err)
	}
	return out, nil
}

// Requeue implements outbox.Inspector: the dead messages f matches become pending, due now, with
// attempts reset; their last error is kept for the record. It wakes this process's relays.
func (s *Store) Requeue(ctx context.Context, f outbox.DeadFilter) (int, error) {
	n, err := s.changeDead(ctx, "requeue", f, "UPDATE "+s.table+" SET status = 'pending', attempts = 0, available_at = "+now+
		", lease_owner = NULL, dead_at = NULL WHERE ")
	if n > 0 {
		s.Notify()
	}
	return n, err
}

// Purge implements outbox.Inspector: it deletes the dead messages f matches.
func (s *Store) Purge(ctx context.Context, f outbox.DeadFilter) (int, error) {
	n, err := s.changeDead(ctx, "purge", f, "DELETE FROM "+s.table+" WHERE ")
	if n > 0 {
		s.Notify() // a purged dead head unblocks its key
	}
	return n, err
}

// changeDead runs stmt (which ends in WHERE) on the dead messages f matches, at most f.Limit
// of them (oldest first) when set.
func (s *Store) changeDead(ctx context.Context, op string, f outbox.DeadFilter, stmt string) (int, error) {
	if err := validateFilter(f); err != nil {
		return 0, fmt.Errorf("mysql: %s: %w", op, err)
	}
	where, args := deadWhere(f)
	q := stmt + where + " ORDER BY seq"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	var n int
	err := s.inTx(ctx, op, func(tx *sql.Tx) error {
		var err error
		n, err = affected(tx.ExecContext(ctx, q, args...))
		return err
	})
	return n, err
}
