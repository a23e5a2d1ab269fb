package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// claimTable leases up to req.Limit due rows under req.Token in one statement (see queries.claim
// and queries.claimOrdered): unordered, the oldest first; ordered, the due runs of the keys in
// turn, starting after the key where the store's previous ordered claim ended (keyCursor). The
// messages come back in seq order. A row that cannot be turned back into a valid message
// (outbox.Message.ValidateStored) is dead-lettered with the reason instead of returned, so a
// corrupt row can never stall or crash the relay.
func (s *Store) claimTable(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	query, args := s.q.claim, []any{req.Token, req.Lease.Seconds(), req.Limit}
	var from string
	var turn uint64
	if req.Ordered {
		from, turn = s.q.keys.start()
		query, args = s.q.claimOrdered, append(args, from)
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	var (
		got     []claimed
		lastPos int64 // the walk position of the last key an ordered claim took
		lastKey string
	)
	for rows.Next() {
		var c claimed
		var pos int64
		lead := []any{&c.seq}
		if req.Ordered {
			lead = []any{&pos, &c.place, &c.seq}
		}
		var err error
		if c.msg, err = scanMessage(rows, lead...); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: claim: %w", err)
		}
		if pos > lastPos {
			lastPos, lastKey = pos, c.msg.Key
		}
		got = append(got, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	if req.Ordered && len(got) > 0 {
		s.q.keys.advance(turn, lastKey)
	}
	// RETURNING has no order; the contract is oldest first, and the sieve needs seq order.
	slices.SortFunc(got, func(a, b claimed) int { return cmp.Compare(a.seq, b.seq) })
	var failures []outbox.Failure
	if req.Ordered {
		got, failures = inRuns(got)
	}
	sieve := backend.ClaimSieve{Backend: "postgres", Ordered: req.Ordered}
	msgs := make([]*outbox.Message, 0, len(got))
	for _, c := range got {
		if f, ok := sieve.Sort(&c.msg.Message, c.msg.corrupt); !ok {
			failures = append(failures, f)
			continue
		}
		msgs = append(msgs, &c.msg.Message)
	}
	if len(failures) > 0 {
		// If this fails the leases expire and the next claim tries again.
		if _, err := s.Nack(ctx, req.Token, failures); err != nil {
			return nil, fmt.Errorf("postgres: claim: dead-letter or hand back row(s): %w", err)
		}
	}
	return msgs, nil
}

// claimed is a row a claim leased.
type claimed struct {
	seq   int64
	place int64 // in its key's run, from 1 (ordered claims, keyed rows)
	msg   stored
}

// inRuns keeps, of an ordered claim's rows in seq order, each key's rows while their places
// count 1, 2, 3...: a row the statement locked but did not lease leaves a gap, and the rows of
// its key after it are handed back unpublished, without an attempt.
func inRuns(got []claimed) (kept []claimed, back []outbox.Failure) {
	next := map[string]int64{}
	kept = got[:0]
	for _, c := range got {
		if k := c.msg.Key; k != "" {
			if c.place != next[k]+1 {
				next[k] = -1 // nothing later of this key can follow on either
				back = append(back, outbox.Failure{ID: c.msg.ID, Release: true})
				continue
			}
			next[k] = c.place
		}
		kept = append(kept, c)
	}
	return kept, back
}

// keyCursor is where a store's last ordered claim ended its walk over the keys. The next ordered
// claim starts after it, so keys take turns: a key whose run was cut by the limit, or passed over
// while held, comes up again before the walk returns to any key it has already served. It lives
// in the process (one per Store), not the table: relays in other processes keep their own turns,
// and racing claims only cost each other skipped rows, never order.
type keyCursor struct {
	mu   sync.Mutex
	key  string
	turn uint64 // counts moves, so a claim that started before another one moved on does not move it back
}

// start returns the key to walk from and the turn it belongs to.
func (c *keyCursor) start() (string, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.key, c.turn
}

// advance moves the cursor to key, the last key of a claim that started at turn, unless another
// claim moved it meanwhile (then this one walked behind it, over the keys it had taken).
func (c *keyCursor) advance(turn uint64, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.turn == turn {
		c.key, c.turn = key, turn+1
	}
}

// stored is a message read back from the table, with what is wrong with it when it is corrupt.
type stored struct {
	outbox.Message
	corrupt error
}

// scanMessage reads the columns of `returning`, after the columns that go to lead (which start
// with o.seq).
func scanMessage(rows pgx.Rows, lead ...any) (stored, error) {
	var (
		m               stored
		payload         string
		result, headers *string
		dest            = []any{&m.ID, &m.Type, &m.Key, &payload, &result, &headers, &m.CreatedAt, &m.Attempts}
	)
	dest = append(lead, dest...)
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
			m.corrupt = &outbox.FieldError{Field: "headers", Problem: "are not a JSON object of strings: " + err.Error()}
		}
	}
	if m.corrupt == nil {
		// The columns' types guarantee JSON; this catches what a hand-made row can still break.
		m.corrupt = backend.ValidateStored(&m.Message)
	}
	return m, nil
}
