package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/txoutbox/outbox/core"
)

// idChunk bounds the IDs one Ack statement lists.
const idChunk = 500

// orderedWindow times the claim's limit is how many due messages behind key heads an ordered
// claim looks at for the rest of their runs.
const orderedWindow = 4

// Claim implements core.Store. Rows that cannot be decoded (a payload, result or headers that is
// not valid JSON, written around the store) are dead-lettered in the same transaction with the
// reason, never returned and never retried: a poison row cannot stall the relay.
func (s *Store) Claim(ctx context.Context, req core.ClaimRequest) ([]*core.Message, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
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

	args := []any{req.Token, until, now.UnixMilli(), req.Limit, now.UnixMilli(), req.Limit, req.Limit}
	if req.Ordered {
		args[5] = orderedWindow * req.Limit
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
	}
	type claimed struct {
		seq     int64
		msg     *core.Message
		corrupt error
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

	// RETURNING reports rows in no particular order; the sieve needs seq order.
	slices.SortFunc(got, func(a, b claimed) int { return cmp.Compare(a.seq, b.seq) })
	sieve := core.ClaimSieve{Backend: "sqlite", Ordered: req.Ordered}
	msgs := make([]*core.Message, 0, len(got))
	for _, c := range got {
		f, ok := sieve.Sort(c.msg, c.corrupt)
		if ok {
			msgs = append(msgs, c.msg)
			continue
		}
		// By seq, not ID: a corrupt row's ID may be what is wrong with it.
		var err error
		if f.Dead {
			_, err = tx.ExecContext(ctx, `UPDATE `+s.q.table+` SET status = 'dead', lease_owner = NULL, last_error = ?, dead_at = ?
			WHERE seq = ?`, f.Error, now.UnixMilli(), c.seq)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE `+s.q.table+` SET lease_owner = NULL, available_at = ? WHERE seq = ?`, now.UnixMilli(), c.seq)
		}
		if err != nil {
			return nil, fmt.Errorf("sqlite: claim: set aside corrupt row %d: %w", c.seq, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: claim: commit: %w", err)
	}
	return msgs, nil
}

// decodeRow finishes decoding a stored message and reports why it is corrupt (core's rule,
// Message.ValidateStored), or nil.
func decodeRow(m *core.Message, headers sql.NullString) error {
	if headers.Valid {
		if err := json.Unmarshal([]byte(headers.String), &m.Headers); err != nil {
			m.Headers = nil
			return &core.FieldError{Field: "headers", Problem: "are not a JSON object of strings"}
		}
	}
	return m.ValidateStored()
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
