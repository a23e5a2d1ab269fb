package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// now is the server's clock; every time the store compares or sets is on it.
const now = "UTC_TIMESTAMP(6)"

// columns is what a claim reads back, in the order scanRow expects.
const columns = "seq, id, type, msg_key, payload, result, headers, created_at, attempts"

// Claim implements outbox.Store in one READ COMMITTED transaction: it locks due rows with
// SELECT ... FOR UPDATE SKIP LOCKED (so concurrent claimers, in any process, pass over each
// other's rows instead of waiting) and leases them until the server's now plus req.Lease. A
// lease's end is also its row's available_at, so an expired lease makes the row due again
// with no second condition. A row that cannot be turned back into a valid message is
// dead-lettered in the same transaction with the reason, never returned.
func (s *Store) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("mysql: claim: %w", err)
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("mysql: claim: %w", err)
	}
	if err := checkTokenLength(req.Token); err != nil {
		return nil, fmt.Errorf("mysql: claim: %w", err)
	}
	var msgs []*outbox.Message
	err := s.inTx(ctx, "claim", func(tx *sql.Tx) error {
		var got []claimed
		var err error
		if req.Ordered {
			got, err = s.lockRuns(ctx, tx, req.Limit)
		} else {
			got, err = s.lockDue(ctx, tx, "", req.Limit)
		}
		if err != nil {
			return err
		}
		msgs, err = s.lease(ctx, tx, req, got)
		return err
	})
	if err != nil {
		return nil, err
	}
	return msgs, nil
}

func checkTokenLength(token string) error {
	if len(token) > maxTokenLength {
		return backend.InvalidArgument("token", fmt.Sprintf("is %d bytes long; the limit is %d", len(token), maxTokenLength))
	}
	return nil
}

// claimed is a row a claim locked.
type claimed struct {
	seq     int64
	msg     *outbox.Message
	corrupt error
}

// lockDue locks and reads up to limit due rows, oldest first, skipping rows other claims hold.
// It walks the claim index (status, seq) and stops after limit due rows: it neither scans nor
// sorts the backlog. where, when set, narrows the rows (ordered claims pass their seqs).
func (s *Store) lockDue(ctx context.Context, tx *sql.Tx, where string, limit int, args ...any) ([]claimed, error) {
	q := "SELECT " + columns + " FROM " + s.table + " FORCE INDEX (" + claimIndex + ") WHERE status = 'pending' AND available_at <= " + now +
		where + " ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED"
	rows, err := tx.QueryContext(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var got []claimed
	for rows.Next() {
		c, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		got = append(got, c)
	}
	return got, rows.Err()
}

// scanRow reads the columns of `columns`, and what makes the row corrupt, if anything.
func scanRow(rows *sql.Rows) (claimed, error) {
	var (
		c               claimed
		m               outbox.Message
		payload         string
		result, headers sql.NullString
	)
	if err := rows.Scan(&c.seq, &m.ID, &m.Type, &m.Key, &payload, &result, &headers, &m.CreatedAt, &m.Attempts); err != nil {
		return c, fmt.Errorf("scan: %w", err)
	}
	m.Payload = json.RawMessage(payload)
	if result.Valid {
		m.Result = json.RawMessage(result.String)
	}
	m.CreatedAt = m.CreatedAt.UTC()
	if headers.Valid {
		if err := json.Unmarshal([]byte(headers.String), &m.Headers); err != nil {
			m.Headers = nil
			c.corrupt = &outbox.FieldError{Field: "headers", Problem: "are not a JSON object of strings"}
		}
	}
	if c.corrupt == nil {
		c.corrupt = backend.ValidateStored(&m)
	}
	c.msg = &m
	return c, nil
}

// lease sorts the locked rows (backend.ClaimSieve), dead-letters the corrupt ones, leases the
// rest under req.Token and returns them. A row the sieve hands back is simply not leased: its
// lock ends with the transaction.
func (s *Store) lease(ctx context.Context, tx *sql.Tx, req outbox.ClaimRequest, got []claimed) ([]*outbox.Message, error) {
	sieve := backend.ClaimSieve{Backend: "mysql", Ordered: req.Ordered}
	msgs := make([]*outbox.Message, 0, len(got))
	var seqs []any
	for _, c := range got {
		f, ok := sieve.Sort(c.msg, c.corrupt)
		switch {
		case ok:
			msgs = append(msgs, c.msg)
			seqs = append(seqs, c.seq)
		case f.Dead:
			// By seq, not ID: a corrupt row's ID may be what is wrong with it.
			if _, err := tx.ExecContext(ctx, "UPDATE "+s.table+" SET status = 'dead', lease_owner = NULL, last_error = ?, dead_at = "+now+
				" WHERE seq = ?", f.Error, c.seq); err != nil {
				return nil, fmt.Errorf("dead-letter corrupt row %d: %w", c.seq, err)
			}
		}
	}
	if len(seqs) == 0 {
		return nil, nil
	}
	q := "UPDATE " + s.table + " SET lease_owner = ?, available_at = " + now + " + INTERVAL ? MICROSECOND WHERE seq IN (" + marks(len(seqs)) + ")"
	if _, err := tx.ExecContext(ctx, q, append([]any{req.Token, max(req.Lease, time.Millisecond).Microseconds()}, seqs...)...); err != nil {
		return nil, err
	}
	return msgs, nil
}

// lockRuns is the ordered claim. A key's run starts at its head, its oldest undelivered
// (pending or dead) row, which must be due, and goes on through the key's next rows while each
// is due and no dead row lies between. It reads without locking, then locks what it chose:
//
//  1. the due heads, oldest first, up to limit: due rows of the claim index with no undelivered
//     row of their key before them (an index-only probe of outbox_key), and due unkeyed rows;
//  2. in one statement, each keyed head's pending rows after it, up to limit, and the key's
//     first dead row after it, which ends the run;
//  3. of heads and runs, the oldest limit rows by seq (a prefix of each run), locked with SKIP
//     LOCKED and re-checked as due.
//
// A key's rows are kept only while the locked rows are its run's first, second, third...: a
// head another claim leased or acked meanwhile is not returned by the lock, so nothing of its
// key is taken. Heads cannot be overtaken: writers of one key commit in seq order (Add's key
// lock), so a row that commits after step 1 comes after every row of its key seen there.
//
// Keys are served oldest head first; every key's head becomes the oldest in time, so none starves.
func (s *Store) lockRuns(ctx context.Context, tx *sql.Tx, limit int) ([]claimed, error) {
	heads, err := s.dueHeads(ctx, tx, limit)
	if err != nil || len(heads) == 0 {
		return nil, err
	}
	plan := make([]planned, 0, len(heads))
	var keyed []planned
	for _, h := range heads {
		plan = append(plan, h)
		if h.key != "" {
			keyed = append(keyed, h)
		}
	}
	if len(keyed) > 0 {
		rest, err := s.runTails(ctx, tx, keyed, limit)
		if err != nil {
			return nil, err
		}
		plan = append(plan, rest...)
	}
	slices.SortFunc(plan, func(a, b planned) int { return cmp.Compare(a.seq, b.seq) })
	plan = plan[:min(len(plan), limit)]
	args := make([]any, len(plan))
	for i, p := range plan {
		args[i] = p.seq
	}
	locked, err := s.lockDue(ctx, tx, " AND seq IN ("+marks(len(plan))+")", len(plan), args...)
	if err != nil {
		return nil, err
	}
	got := map[int64]claimed{}
	for _, c := range locked {
		got[c.seq] = c
	}
	out := make([]claimed, 0, len(locked))
	broken := map[string]bool{} // keys whose run lost a row to another claim
	for _, p := range plan {
		c, ok := got[p.seq]
		switch {
		case p.key != "" && broken[p.key]:
		case !ok:
			if p.key != "" {
				broken[p.key] = true
			}
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

// planned is a row an ordered claim means to take.
type planned struct {
	seq int64
	key string
}

func (s *Store) dueHeads(ctx context.Context, tx *sql.Tx, limit int) ([]planned, error) {
	rows, err := tx.QueryContext(ctx, "SELECT c.seq, c.msg_key FROM "+s.table+" AS c FORCE INDEX ("+claimIndex+
		") WHERE c.status = 'pending' AND c.available_at <= "+now+" AND (c.msg_key = '' OR NOT EXISTS (SELECT 1 FROM "+s.table+
		" AS p FORCE INDEX (outbox_key) WHERE p.msg_key = c.msg_key AND p.status IN ('pending', 'dead') AND p.seq < c.seq))"+
		" ORDER BY c.seq LIMIT ?", limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []planned
	for rows.Next() {
		var p planned
		if err := rows.Scan(&p.seq, &p.key); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// runTails returns, for each keyed head, the rows after it that continue its run: pending,
// due, in seq order, before the key's first later dead row and before its first row not due.
func (s *Store) runTails(ctx context.Context, tx *sql.Tx, heads []planned, limit int) ([]planned, error) {
	parts := make([]string, len(heads))
	args := make([]any, 0, 5*len(heads))
	for i, h := range heads {
		parts[i] = "(SELECT r.seq, r.msg_key, r.available_at <= " + now + ", (SELECT MIN(d.seq) FROM " + s.table +
			" AS d WHERE d.msg_key = ? AND d.status = 'dead' AND d.seq > ?) FROM " + s.table +
			" AS r FORCE INDEX (outbox_key) WHERE r.msg_key = ? AND r.status = 'pending' AND r.seq > ? ORDER BY r.seq LIMIT ?)"
		args = append(args, h.key, h.seq, h.key, h.seq, limit-1)
	}
	rows, err := tx.QueryContext(ctx, strings.Join(parts, " UNION ALL "), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type tail struct {
		planned
		due  bool
		dead sql.NullInt64
	}
	var tails []tail
	for rows.Next() {
		var t tail
		if err := rows.Scan(&t.seq, &t.key, &t.due, &t.dead); err != nil {
			return nil, err
		}
		tails = append(tails, t)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// UNION ALL promises no order; a run is read in seq order.
	slices.SortFunc(tails, func(a, b tail) int { return cmp.Compare(a.seq, b.seq) })
	ended := map[string]bool{}
	var out []planned
	for _, t := range tails {
		if ended[t.key] || !t.due || (t.dead.Valid && t.dead.Int64 < t.seq) {
			ended[t.key] = true
			continue
		}
		out = append(out, t.planned)
	}
	return out, nil
}

// marks returns n comma-separated placeholders.
func marks(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}
