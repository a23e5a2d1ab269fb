package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// idChunk bounds the IDs one Ack statement lists.
const idChunk = 500

// Claim implements outbox.Store. Rows that cannot be decoded (a payload, result or headers that is
// not valid JSON, written around the store) are dead-lettered in the same transaction with the
// reason, never returned and never retried: a poison row cannot stall the relay.
func (s *Store) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
	}
	now := time.Now()
	until := now.Add(max(req.Lease, time.Millisecond)).UnixMilli()

	tx, end, err := s.beginWrite(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim: %w", err)
	}
	defer end()

	var rows *sql.Rows
	if req.Ordered {
		// The runs are chosen and leased in one write transaction: no other claimer, in any
		// process, runs between the two.
		seqs, err := s.orderedRuns(ctx, tx, now.UnixMilli(), req.Limit)
		if err != nil {
			return nil, fmt.Errorf("sqlite: claim: %w", err)
		}
		if len(seqs) == 0 {
			return nil, nil
		}
		list, err := json.Marshal(seqs)
		if err != nil {
			return nil, fmt.Errorf("sqlite: claim: %w", err)
		}
		rows, err = tx.QueryContext(ctx, s.q.claimSeqs, req.Token, until, string(list))
		if err != nil {
			return nil, fmt.Errorf("sqlite: claim: %w", err)
		}
	} else {
		rows, err = tx.QueryContext(ctx, s.q.claim, req.Token, until, now.UnixMilli(), req.Limit, now.UnixMilli(), req.Limit, req.Limit)
		if err != nil {
			return nil, fmt.Errorf("sqlite: claim: %w", err)
		}
	}
	type claimed struct {
		seq     int64
		msg     *outbox.Message
		corrupt error
	}
	var got []claimed
	for rows.Next() {
		var (
			c               claimed
			m               outbox.Message
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
	sieve := backend.ClaimSieve{Backend: "sqlite", Ordered: req.Ordered}
	msgs := make([]*outbox.Message, 0, len(got))
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

// orderedWindow times the claim's limit is how many pending messages behind key heads an
// ordered claim looks at, at most, for the rest of their runs.
const orderedWindow = 4

// orderedRuns picks the rows of an ordered claim, up to limit, oldest first: the due heads
// (blocked = 0, which includes unkeyed messages) and, after each keyed head, the messages of its
// key while each is due and follows the one before with nothing undelivered between them. Both
// come from the due index in seq order, read side by side and only as far as the claim needs,
// so a claim over many keys touches the same few pages an unordered one would. The pending
// messages behind heads are read whether due or not, from the oldest and at most a window of
// them: a leased or retrying message among them ends its key's run. A dead message cannot be
// seen there (the due index holds pending messages only), so when the table holds any, each
// step of a run also probes the key index for one between.
func (s *Store) orderedRuns(ctx context.Context, tx *sql.Tx, now int64, limit int) ([]int64, error) {
	if _, err := tx.ExecContext(ctx, s.q.lock); err != nil {
		return nil, err
	}
	var anyDead bool
	if err := tx.QueryRowContext(ctx, s.q.anyDead).Scan(&anyDead); err != nil {
		return nil, err
	}
	heads, err := tx.QueryContext(ctx, s.q.dueHeads, now, limit)
	if err != nil {
		return nil, err
	}
	defer heads.Close()
	behind, err := tx.QueryContext(ctx, s.q.behindHeads, now, orderedWindow*limit)
	if err != nil {
		return nil, err
	}
	defer behind.Close()

	type row struct {
		seq int64
		key string
		due bool
		ok  bool // false once the stream is exhausted
	}
	next := func(rows *sql.Rows) (row, error) {
		var r row
		if !rows.Next() {
			return r, rows.Err()
		}
		r.ok = true
		return r, rows.Scan(&r.seq, &r.key, &r.due)
	}
	h, err := next(heads)
	if err != nil {
		return nil, err
	}
	b, err := next(behind)
	if err != nil {
		return nil, err
	}
	var seqs []int64
	type run struct {
		last  int64 // the seq of its last message so far
		ended bool
	}
	runs := map[string]run{} // by key, for the keys whose head this claim took
	for len(seqs) < limit && (h.ok || b.ok) {
		if h.ok && (!b.ok || h.seq < b.seq) {
			seqs = append(seqs, h.seq)
			if h.key != "" {
				runs[h.key] = run{last: h.seq}
			}
			if h, err = next(heads); err != nil {
				return nil, err
			}
			continue
		}
		if r, open := runs[b.key]; open && !r.ended {
			follows := b.due
			if follows && anyDead {
				var between bool
				if err := tx.QueryRowContext(ctx, s.q.undeliveredBetween, b.key, r.last, b.seq).Scan(&between); err != nil {
					return nil, err
				}
				follows = !between
			}
			if follows {
				seqs = append(seqs, b.seq)
			}
			runs[b.key] = run{last: b.seq, ended: !follows}
		}
		if b, err = next(behind); err != nil {
			return nil, err
		}
	}
	return seqs, nil
}

// decodeRow finishes decoding a stored message and reports why it is corrupt
// (backend.ValidateStored), or nil.
func decodeRow(m *outbox.Message, headers sql.NullString) error {
	if headers.Valid {
		if err := json.Unmarshal([]byte(headers.String), &m.Headers); err != nil {
			m.Headers = nil
			return &outbox.FieldError{Field: "headers", Problem: "are not a JSON object of strings"}
		}
	}
	return backend.ValidateStored(m)
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
