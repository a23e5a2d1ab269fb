package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/txoutbox/outbox/core"
)

// idChunk bounds the IDs one Ack statement lists.
const idChunk = 500

// Claim implements core.Store. Rows that cannot be decoded (a payload, result or headers that is
// not valid JSON, written around the store) are dead-lettered in the same transaction with the
// reason, never returned and never retried: a poison row cannot stall the relay.
func (s *Store) Claim(ctx context.Context, req core.ClaimRequest) ([]*core.Message, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	now := time.Now()
	until := now.Add(max(req.Lease, time.Millisecond)).UnixMilli()
	query := s.q.claim
	if req.Ordered {
		query = s.q.claimOrdered
	}

	tx, end, err := s.beginWrite(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
	}
	defer end()

	args := []any{req.Owner, until, now.UnixMilli(), req.Limit}
	if !req.Ordered {
		args = append(args, now.UnixMilli(), req.Limit, req.Limit)
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
	}
	type claimed struct {
		seq     int64
		msg     *core.Message
		corrupt string
	}
	var got []claimed
	for rows.Next() {
		var (
			c               claimed
			m               core.Message
			payload         string
			result, headers sql.NullString
			created         int64
		)
		if err := rows.Scan(&c.seq, &m.ID, &m.Type, &m.Key, &payload, &result, &headers, &created, &m.Attempts); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: claim: scan: %w", err)
		}
		m.Payload = json.RawMessage(payload)
		if result.Valid {
			m.Result = json.RawMessage(result.String)
		}
		m.CreatedAt = time.UnixMilli(created).UTC()
		c.corrupt = decodeRow(&m, headers)
		c.msg = &m
		got = append(got, c)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
	}

	// RETURNING reports rows in no particular order.
	slices.SortFunc(got, func(a, b claimed) int { return cmp.Compare(a.seq, b.seq) })
	msgs := make([]*core.Message, 0, len(got))
	for _, c := range got {
		if c.corrupt == "" {
			msgs = append(msgs, c.msg)
			continue
		}
		_, err := tx.ExecContext(ctx, `UPDATE `+s.q.table+` SET status = 'dead', lease_owner = NULL, last_error = ?, dead_at = ?
			WHERE seq = ?`, "sqlite: corrupt row: "+c.corrupt, now.UnixMilli(), c.seq)
		if err != nil {
			return nil, fmt.Errorf("sqlite: claim: dead-letter corrupt row %d: %w", c.seq, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: claim: commit: %w", err)
	}
	return msgs, nil
}

// decodeRow finishes decoding a stored message and reports why it is corrupt, or "".
func decodeRow(m *core.Message, headers sql.NullString) string {
	var problems []string
	if m.ID == "" {
		problems = append(problems, "id is empty")
	}
	if m.Type == "" {
		problems = append(problems, "type is empty")
	}
	if !json.Valid(m.Payload) {
		problems = append(problems, "payload is not valid JSON")
	}
	if len(m.Result) > 0 && !json.Valid(m.Result) {
		problems = append(problems, "result is not valid JSON")
	}
	if headers.Valid {
		if err := json.Unmarshal([]byte(headers.String), &m.Headers); err != nil {
			m.Headers = nil
			problems = append(problems, "headers are not a JSON object of strings")
		}
	}
	return strings.Join(problems, "; ")
}

// Ack implements core.Store: it deletes the messages, or marks them delivered with
// KeepDelivered, when owner still holds their lease.
func (s *Store) Ack(ctx context.Context, owner string, ids []string) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("sqlite: ack: %w", err)
	}
	if owner == "" {
		return fmt.Errorf("sqlite: ack: %w", &core.FieldError{Field: "owner", Problem: "is empty"})
	}
	if len(ids) == 0 {
		return nil
	}
	now := time.Now().UnixMilli()
	return s.inTx(ctx, "ack", func(tx *sql.Tx) error {
		for start := 0; start < len(ids); start += idChunk {
			chunk := ids[start:min(start+idChunk, len(ids))]
			var query string
			args := make([]any, 0, len(chunk)+2)
			if s.cfg.KeepDelivered {
				query = `UPDATE ` + s.q.table + ` SET status = 'delivered', delivered_at = ?, lease_owner = NULL WHERE `
				args = append(args, now)
			} else {
				query = `DELETE FROM ` + s.q.table + ` WHERE `
			}
			query += `status = 'pending' AND lease_owner = ? AND id IN (` + placeholders(len(chunk)) + `)`
			args = append(args, owner)
			for _, id := range chunk {
				args = append(args, id)
			}
			if _, err := tx.ExecContext(ctx, query, args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// Nack implements core.Store: attempts+1, the error text, and the retry time or the dead state,
// for the messages whose lease owner still holds. The lease is released.
func (s *Store) Nack(ctx context.Context, owner string, failures []core.Failure) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("sqlite: nack: %w", err)
	}
	if owner == "" {
		return fmt.Errorf("sqlite: nack: %w", &core.FieldError{Field: "owner", Problem: "is empty"})
	}
	if len(failures) == 0 {
		return nil
	}
	now := time.Now().UnixMilli()
	return s.inTx(ctx, "nack", func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE `+s.q.table+` SET attempts = attempts + 1, last_error = ?,
			lease_owner = NULL, available_at = ?,
			status = CASE WHEN ? THEN 'dead' ELSE 'pending' END,
			dead_at = CASE WHEN ? THEN ? END
			WHERE id = ? AND status = 'pending' AND lease_owner = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, f := range failures {
			retry := now
			if !f.Dead && !f.RetryAt.IsZero() {
				retry = f.RetryAt.UnixMilli()
			}
			if _, err := stmt.ExecContext(ctx, f.Error, retry, f.Dead, f.Dead, now, f.ID, owner); err != nil {
				return err
			}
		}
		return nil
	})
}

// inTx runs fn in one write transaction: a batch of statements costs one commit.
func (s *Store) inTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, end, err := s.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	defer end()
	if err := fn(tx); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: %s: commit: %w", op, err)
	}
	return nil
}
