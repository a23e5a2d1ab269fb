package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/txoutbox/outbox/core"
)

// Claim leases up to req.Limit due messages under req.Token, oldest first, in one statement (see
// queries.claim and queries.claimOrdered). A row that cannot be turned back into a valid message
// (core.Message.ValidateStored) is dead-lettered with the reason instead of returned, so a
// corrupt row can never stall or crash the relay.
func (s *Store) Claim(ctx context.Context, req core.ClaimRequest) ([]*core.Message, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	query, args := s.q.claim, []any{req.Token, req.Lease.Seconds(), req.Limit}
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
		msg stored
	}
	var got []claimed
	for rows.Next() {
		var c claimed
		var err error
		if c.msg, err = scanMessage(rows, &c.seq); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: claim: %w", err)
		}
		got = append(got, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	// RETURNING has no order; the contract is oldest first, and the sieve needs seq order.
	slices.SortFunc(got, func(a, b claimed) int { return cmp.Compare(a.seq, b.seq) })
	sieve := core.ClaimSieve{Backend: "postgres", Ordered: req.Ordered}
	msgs := make([]*core.Message, 0, len(got))
	var failures []core.Failure
	for _, c := range got {
		if f, ok := sieve.Sort(&c.msg.Message, c.msg.corrupt); !ok {
			failures = append(failures, f)
			continue
		}
		msgs = append(msgs, &c.msg.Message)
	}
	if len(failures) > 0 {
		// If this fails the lease expires and the next claim tries again.
		if _, err := s.Nack(ctx, req.Token, failures); err != nil {
			return nil, fmt.Errorf("postgres: claim: dead-letter corrupt row(s): %w", err)
		}
	}
	return msgs, nil
}

// orderedWindow times the claim's limit is how many due rows an ordered claim searches for runs
// before it walks the keys one by one. Each window row costs one index probe; a window the size
// of the limit measured fastest (drains of 1000, 10 and 1 keys), the key walk covering keys whose
// runs sit deeper.
const orderedWindow = 1

// stored is a message read back from the table, with what is wrong with it when it is corrupt.
type stored struct {
	core.Message
	corrupt error
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
			m.corrupt = &core.FieldError{Field: "headers", Problem: "are not a JSON object of strings: " + err.Error()}
		}
	}
	if m.corrupt == nil {
		// The columns' types guarantee JSON; this catches what a hand-made row can still break.
		m.corrupt = m.ValidateStored()
	}
	return m, nil
}
