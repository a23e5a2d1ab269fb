package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
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
	from, turn := s.cursor.start()
	var last *string // the last key an ordered claim served
	err := s.inTx(ctx, "claim", func(tx *sql.Tx) error {
		var got []claimed
		var err error
		if req.Ordered {
			got, last, err = s.lockRuns(ctx, tx, from, req.Limit)
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
	if last != nil {
		s.cursor.advance(turn, *last)
	}
	s.maybePrune(ctx)
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
// is due and no dead row lies between. Keys take turns: the claim walks the keys in key order
// from the one after where this store's previous ordered claim ended (keyCursor), round to it
// again, and serves the first limit keys whose head is due. It reads without locking, then
// locks what it chose:
//
//  1. the walk (walk.next): a loose scan of the (status, msg_key, seq) index, one probe per key
//     with pending rows, whatever their number, so keys whose head is leased or waiting for its
//     retry cost one probe each and their backlogs are never read;
//  2. the batch is shared out among the due keys in walk order: each keyed head, then each
//     key's next rows up to its share (runRows), shares of runs that end early going to the
//     runs that go on;
//  3. the chosen rows are locked with SKIP LOCKED and re-checked as due, the heads first, in a
//     statement of their own, and the rest only of the keys whose head this claim locked.
//
// The head's lock is the key's: a head another claim locked, leased or acked meanwhile is not
// returned by the lock, so nothing of its key is taken, and nothing of it is locked either. A
// claim that locked a key's rows with its head in one statement would, while losing the head to
// a racing claim, still hold (until it commits) the later rows the statement passed before the
// other claim got to them, cutting the winner's run short. A key's rows are then kept only
// while the locked rows are its run's first, second, third... Heads cannot be overtaken: writers of one key commit in seq order (Add's key
// lock), so a row that commits after the walk comes after every row of its key seen there, and
// a dead row is only ever requeued, never written before a later one's head.
//
// Sharing the batch keeps the turns short: with limit L and K keys due, every key is served
// within ceil(K/L) claims of one claimer, and a key due alone fills the batch with its run.
func (s *Store) lockRuns(ctx context.Context, tx *sql.Tx, from string, limit int) ([]claimed, *string, error) {
	w := &walk{from: from, lower: from}
	var (
		out  []claimed
		last *string
	)
	// A claim racing this one for the same keys takes some of their heads first. Then the walk
	// goes on past the keys tried, with what is left of the batch, a few times at most.
	for pass := 0; pass < maxPasses && len(out) < limit; pass++ {
		keys, err := w.next(ctx, s, tx, limit-len(out))
		if err != nil {
			return nil, nil, err
		}
		if len(keys) == 0 {
			break // round to the start: what an earlier pass locked is the batch
		}
		got, lastKey, lost, err := s.lockPlan(ctx, tx, keys, limit-len(out))
		if err != nil {
			return nil, nil, err
		}
		out = append(out, got...)
		if lastKey != nil {
			last = lastKey
		}
		if !lost {
			break
		}
	}
	slices.SortFunc(out, func(a, b claimed) int { return cmp.Compare(a.seq, b.seq) })
	return out, last, nil
}

// maxPasses bounds how often one ordered claim walks on past keys another claim took first.
const maxPasses = 3

// lockPlan locks the heads of the due keys, shares limit rows out among the keys whose head it
// got, locks those rows and keeps each key's locked run prefix. It returns the rows, the last key
// in walk order it took rows of, and whether any key lost its head or a row of its run to
// another claim.
func (s *Store) lockPlan(ctx context.Context, tx *sql.Tx, keys []walked, limit int) ([]claimed, *string, bool, error) {
	got := map[int64]claimed{}
	var heads []any
	for _, k := range keys {
		if k.key != "" {
			heads = append(heads, k.head)
		}
	}
	if len(heads) > 0 {
		locked, err := s.lockDue(ctx, tx, " AND seq IN ("+marks(len(heads))+")", len(heads), heads...)
		if err != nil {
			return nil, nil, false, err
		}
		for _, c := range locked {
			got[c.seq] = c
		}
	}
	lost := len(got) < len(heads)
	won := make([]walked, 0, len(keys))
	for _, k := range keys {
		if _, ok := got[k.head]; ok || k.key == "" {
			won = append(won, k)
		}
	}
	plan, err := s.shareOut(ctx, tx, won, limit)
	if err != nil || len(plan) == 0 {
		return nil, nil, lost, err
	}
	var rest []any // the heads are locked already
	for _, p := range plan {
		if _, ok := got[p.seq]; !ok {
			rest = append(rest, p.seq)
		}
	}
	if len(rest) > 0 {
		slices.SortFunc(rest, func(a, b any) int { return cmp.Compare(a.(int64), b.(int64)) })
		locked, err := s.lockDue(ctx, tx, " AND seq IN ("+marks(len(rest))+")", len(rest), rest...)
		if err != nil {
			return nil, nil, false, err
		}
		for _, c := range locked {
			got[c.seq] = c
		}
	}
	pos := map[string]int{} // each key's place in the walk
	for i, k := range keys {
		pos[k.key] = i
	}
	slices.SortFunc(plan, func(a, b planned) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]claimed, 0, len(plan))
	broken := map[string]bool{} // keys whose run lost a row
	last := -1
	for _, p := range plan {
		c, ok := got[p.seq]
		switch {
		case p.key != "" && broken[p.key]:
		case !ok:
			lost = true
			if p.key != "" {
				broken[p.key] = true
			}
		default:
			out = append(out, c)
			last = max(last, pos[p.key])
		}
	}
	if last < 0 {
		return out, nil, lost, nil
	}
	return out, &keys[last].key, lost, nil
}

// planned is a row an ordered claim means to take, with the key it is run under.
type planned struct {
	seq int64
	key string
}

// walked is a key the walk found due: its head (0 for the unkeyed rows, which have none).
type walked struct {
	key  string
	head int64
}

// walk is an ordered claim's way round the keys: those after from, then from the first key
// (the empty one, the unkeyed rows) up to from itself. lower is where it goes on.
type walk struct {
	from      string
	lower     string
	inclusive bool // lower itself is still to walk
	wrapped   bool // in the stretch up to from
	done      bool
}

// next returns up to n more keys whose head is due, in walk order. The unkeyed rows count as
// one key, due when any of them is. Each page is one statement: the loose index scan gives each
// key's oldest pending row, and a key is due when that row is due and no dead row of the key
// comes before it.
func (w *walk) next(ctx context.Context, s *Store, tx *sql.Tx, n int) ([]walked, error) {
	page := min(max(2*n, 64), 1000)
	var out []walked
	for len(out) < n && !w.done {
		keys, err := s.walkPage(ctx, tx, w.lower, w.inclusive, w.from, w.wrapped, page)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if len(out) == n {
				return out, nil
			}
			w.lower, w.inclusive = k.key, false
			if k.due {
				out = append(out, walked{key: k.key, head: k.head})
			}
		}
		if len(keys) < page {
			if w.wrapped {
				w.done = true
			} else {
				w.lower, w.inclusive, w.wrapped = "", true, true
			}
		}
	}
	return out, nil
}

type walkRow struct {
	key  string
	head int64
	due  bool
}

// walkPage reads up to n keys with pending rows, after lower (or from it, inclusive), up to
// upper when bounded, and whether each one's head is due.
func (s *Store) walkPage(ctx context.Context, tx *sql.Tx, lower string, inclusive bool, upper string, bounded bool, n int) ([]walkRow, error) {
	op := " > ?"
	if inclusive {
		op = " >= ?"
	}
	args := []any{lower}
	where := "status = 'pending' AND msg_key" + op
	if bounded {
		where += " AND msg_key <= ?"
		args = append(args, upper)
	}
	args = append(args, n)
	// GROUP BY status, msg_key (not msg_key alone) is what MariaDB needs to see the loose scan.
	q := "SELECT g.msg_key, g.head, IF(g.msg_key = '', EXISTS (SELECT 1 FROM " + s.table + " AS u FORCE INDEX (" + keyIndex +
		") WHERE u.status = 'pending' AND u.msg_key = '' AND u.available_at <= " + now + "), h.available_at <= " + now +
		" AND NOT EXISTS (SELECT 1 FROM " + s.table + " AS d FORCE INDEX (" + keyIndex + ") WHERE d.status = 'dead' AND d.msg_key = g.msg_key AND d.seq < g.head))" +
		" FROM (SELECT msg_key, MIN(seq) AS head FROM " + s.table + " FORCE INDEX (" + keyIndex + ") WHERE " + where +
		" GROUP BY status, msg_key ORDER BY status, msg_key LIMIT ?) AS g JOIN " + s.table + " AS h ON h.seq = g.head ORDER BY g.msg_key"
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []walkRow
	for rows.Next() {
		var w walkRow
		if err := rows.Scan(&w.key, &w.head, &w.due); err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// shareOut plans up to limit rows over the due keys: every keyed head, then the rows after
// them, each key getting an equal share of what is left (the earlier keys in the walk one more
// when it does not divide), again for the keys that used their whole share while rows are left
// over from runs that ended early. The unkeyed rows' "run" is their due rows in seq order.
func (s *Store) shareOut(ctx context.Context, tx *sql.Tx, keys []walked, limit int) ([]planned, error) {
	var plan []planned
	var open []openRun
	for _, k := range keys {
		if k.key == "" {
			open = append(open, openRun{key: ""}) // from the first due unkeyed row
			continue
		}
		plan = append(plan, planned{seq: k.head, key: k.key})
		open = append(open, openRun{key: k.key, last: k.head})
	}
	for round := 0; round < 4 && len(plan) < limit && len(open) > 0; round++ {
		left := limit - len(plan)
		quota := make([]int, len(open))
		for i := range open {
			quota[i] = left / len(open)
			if i < left%len(open) {
				quota[i]++
			}
		}
		got, err := s.runRows(ctx, tx, open, quota)
		if err != nil {
			return nil, err
		}
		var still []openRun
		for i, r := range open {
			rows := got[r.key]
			for _, seq := range rows {
				plan = append(plan, planned{seq: seq, key: r.key})
			}
			if quota[i] > 0 && len(rows) == quota[i] {
				still = append(still, openRun{key: r.key, last: rows[len(rows)-1]})
			} else if quota[i] == 0 {
				still = append(still, r)
			}
		}
		open = still
	}
	return plan, nil
}

// openRun is a run that may go on after its last planned row.
type openRun struct {
	key  string
	last int64
}

// runRows returns, for each open run with a quota, up to quota seqs that continue it after
// last, in seq order: a keyed run's pending rows while each is due and before the key's first
// dead row after last; the unkeyed rows' due rows.
func (s *Store) runRows(ctx context.Context, tx *sql.Tx, open []openRun, quota []int) (map[string][]int64, error) {
	var parts []string
	var args []any
	for i, r := range open {
		if quota[i] == 0 {
			continue
		}
		if r.key == "" {
			parts = append(parts, "(SELECT '', r.seq, 1, NULL FROM "+s.table+" AS r FORCE INDEX ("+keyIndex+
				") WHERE r.status = 'pending' AND r.msg_key = '' AND r.seq > ? AND r.available_at <= "+now+" ORDER BY r.seq LIMIT ?)")
			args = append(args, r.last, quota[i])
			continue
		}
		// The walked key, not r.msg_key: keys the collation compares equal run as one.
		parts = append(parts, "(SELECT ?, r.seq, r.available_at <= "+now+", (SELECT MIN(d.seq) FROM "+s.table+" AS d FORCE INDEX ("+keyIndex+
			") WHERE d.status = 'dead' AND d.msg_key = ? AND d.seq > ?) FROM "+s.table+" AS r FORCE INDEX ("+keyIndex+
			") WHERE r.status = 'pending' AND r.msg_key = ? AND r.seq > ? ORDER BY r.seq LIMIT ?)")
		args = append(args, r.key, r.key, r.last, r.key, r.last, quota[i])
	}
	out := map[string][]int64{}
	if len(parts) == 0 {
		return out, nil
	}
	rows, err := tx.QueryContext(ctx, strings.Join(parts, " UNION ALL "), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type row struct {
		key  string
		seq  int64
		due  bool
		dead sql.NullInt64
	}
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.key, &r.seq, &r.due, &r.dead); err != nil {
			return nil, err
		}
		all = append(all, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// UNION ALL promises no order; a run is read in seq order.
	slices.SortFunc(all, func(a, b row) int { return cmp.Compare(a.seq, b.seq) })
	ended := map[string]bool{}
	for _, r := range all {
		if ended[r.key] || !r.due || (r.dead.Valid && r.dead.Int64 < r.seq) {
			ended[r.key] = true
			continue
		}
		out[r.key] = append(out[r.key], r.seq)
	}
	return out, nil
}

// keyCursor is where a store's last ordered claim ended its walk over the keys. The next ordered
// claim starts after it, so keys take turns: a key whose run was cut, or passed over while held,
// comes up again before the walk returns to any key it has already served. It lives in the
// process (one per Store), not the table: relays in other processes keep their own turns, and
// racing claims only cost each other skipped rows, never order.
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
// claim moved it meanwhile.
func (c *keyCursor) advance(turn uint64, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.turn == turn {
		c.key, c.turn = key, turn+1
	}
}

// marks returns n comma-separated placeholders.
func marks(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}
