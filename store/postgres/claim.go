package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/txoutbox/outbox/core"
)

// Claim leases up to req.Limit due messages to req.Owner, oldest first, in one statement (see
// queries.claim). A row that cannot be turned back into a valid message (headers that are not a
// JSON object of strings, an empty type) is dead-lettered with the reason instead of returned,
// so a corrupt row can never stall or crash the relay.
func (s *Store) Claim(ctx context.Context, req core.ClaimRequest) ([]*core.Message, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	if err := s.open(); err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	query, args := s.q.claim, []any{req.Owner, req.Lease.Seconds(), req.Limit}
	if req.Ordered {
		// The window of due rows searched for heads before walking every key (see queries).
		query, args = s.q.claimOrdered, append(args, orderedWindow*req.Limit)
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	type claimed struct {
		seq int64
		msg *core.Message
	}
	var got []claimed
	var corrupt []core.Failure
	for rows.Next() {
		var c claimed
		m, err := scanMessage(rows, &c.seq)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: claim: %w", err)
		}
		if problem := m.corrupt; problem != "" {
			corrupt = append(corrupt, core.Failure{ID: m.ID, Error: "postgres: corrupt row: " + problem, Dead: true})
			continue
		}
		c.msg = &m.Message
		got = append(got, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	if len(corrupt) > 0 {
		// If this fails the lease expires and the next claim tries again.
		if err := s.Nack(ctx, req.Owner, corrupt); err != nil {
			return nil, fmt.Errorf("postgres: claim: dead-letter %d corrupt row(s): %w", len(corrupt), err)
		}
	}
	// RETURNING has no order; the contract is oldest first.
	slices.SortFunc(got, func(a, b claimed) int { return cmp.Compare(a.seq, b.seq) })
	msgs := make([]*core.Message, len(got))
	for i, c := range got {
		msgs[i] = c.msg
	}
	return msgs, nil
}

// orderedWindow times the claim's limit is how many due rows an ordered claim searches for key
// heads before it walks the keys one by one.
const orderedWindow = 4

// stored is a message read back from the table, with what is wrong with it when it is corrupt.
type stored struct {
	core.Message
	corrupt string
}

// scanMessage reads the columns of `returning` (after seq, which goes to seq when non-nil).
func scanMessage(rows pgx.Rows, seq *int64) (stored, error) {
	var (
		m               stored
		payload         string
		result, headers *string
		dest            = []any{&m.ID, &m.Type, &m.Key, &payload, &result, &headers, &m.CreatedAt, &m.Attempts}
	)
	if seq != nil {
		dest = append([]any{seq}, dest...)
	}
	if err := rows.Scan(dest...); err != nil {
		return m, err
	}
	m.Payload = json.RawMessage(payload)
	if result != nil {
		m.Result = json.RawMessage(*result)
	}
	m.CreatedAt = m.CreatedAt.UTC()
	if headers != nil {
		if err := json.Unmarshal([]byte(*headers), &m.Headers); err != nil {
			m.corrupt = "headers are not a JSON object of strings: " + err.Error()
		}
	}
	if m.corrupt == "" {
		// The columns' types guarantee JSON; this catches what a hand-made row can still break.
		if err := m.Validate(1 << 30); err != nil {
			m.corrupt = err.Error()
		}
	}
	return m, nil
}

// Ack marks the messages delivered, or deletes them, depending on KeepDelivered; only rows
// still leased to owner are touched, so a relay whose lease expired and was taken over cannot
// acknowledge on the new holder's behalf.
func (s *Store) Ack(ctx context.Context, owner string, ids []string) error {
	if err := s.open(); err != nil {
		return fmt.Errorf("postgres: ack: %w", err)
	}
	ids = validIDs(ids)
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, s.q.ack, ids, owner); err != nil {
		return fmt.Errorf("postgres: ack %d message(s): %w", len(ids), err)
	}
	return nil
}

// Nack records failed publishes for the messages owner still holds, in one statement.
func (s *Store) Nack(ctx context.Context, owner string, failures []core.Failure) error {
	if err := s.open(); err != nil {
		return fmt.Errorf("postgres: nack: %w", err)
	}
	n := len(failures)
	ids, texts, retry, dead := make([]string, 0, n), make([]string, 0, n), make([]time.Time, 0, n), make([]bool, 0, n)
	for _, f := range failures {
		if _, err := uuid.Parse(f.ID); err != nil {
			continue // not a message of this store: unknown IDs are ignored
		}
		at := f.RetryAt
		if at.IsZero() {
			at = time.Now()
		}
		ids, texts, retry, dead = append(ids, f.ID), append(texts, cleanText(f.Error)), append(retry, at), append(dead, f.Dead)
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, s.q.nack, ids, texts, retry, dead, owner); err != nil {
		return fmt.Errorf("postgres: nack %d message(s): %w", len(ids), err)
	}
	return nil
}

// cleanText makes an error text storable: PostgreSQL text holds neither NUL bytes nor invalid
// UTF-8, and a transport's error may contain either.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// validIDs drops IDs that are not UUIDs (they cannot name a stored message) so that one bad ID
// cannot fail the cast of the whole batch.
func validIDs(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, err := uuid.Parse(id); err == nil {
			out = append(out, id)
		}
	}
	return out
}
