package mysql

import (
	"context"
	"database/sql"
	"strings"
	"time"
)

// Pruning the key-lock table. Add creates a row of <table>_keys for every key it writes and
// nothing else removes them, so without pruning the table holds every key ever written. The
// claim path prunes it: after a claim commits, when a sweep is due, the store deletes the rows
// of one page of keys that have no pending or dead message, and goes on with the next page at
// the next claim until it has been round the table; then it waits pruneEvery before the next
// sweep. A key whose row is pruned gets a new one at its next Add.
//
// Deleting a row is safe whenever no transaction holds it, and the prune never deletes one
// that is held: it locks the rows it means to delete with FOR UPDATE SKIP LOCKED, so the row of
// a writer still inside its transaction is passed over (and the prune never waits for a
// writer). A writer that comes while the prune holds a row waits for it, as for any writer of
// its key; when the prune commits the delete, the first waiter inserts the row again and holds
// it, and the next waiter's duplicate check waits for that one (TestPruneDeletesARowWritersWaitFor
// on MariaDB 10.11: the second waiter times out waiting, never deadlocks nor passes). Writers of
// one key still take turns, so a key's seq order stays its commit order.
const (
	pruneEvery = time.Minute // between sweeps of the key-lock table
	prunePage  = 500         // key rows one prune reads
)

// pruneState is the sweep's progress: where the next page starts and when the next sweep is due.
type pruneState struct {
	running bool
	after   []byte // the last key row of the previous page; nil at the start of a sweep
	next    time.Time
}

// maybePrune runs one page of the key-table sweep when one is due and no other claim of this
// store is running one. Its errors are dropped: the next sweep tries again, and a key row left
// behind costs space, never order.
func (s *Store) maybePrune(ctx context.Context) {
	s.pruneMu.Lock()
	p := &s.prune
	if p.running || (p.after == nil && time.Now().Before(p.next)) {
		s.pruneMu.Unlock()
		return
	}
	p.running = true
	after := p.after
	s.pruneMu.Unlock()

	last, _, err := s.prunePage(ctx, after, prunePage)

	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	p.running = false
	switch {
	case err != nil:
		p.next = time.Now().Add(pruneEvery)
	case last == nil: // round the table
		p.after, p.next = nil, time.Now().Add(pruneEvery)
	default:
		p.after = last
	}
}

// prunePage reads up to n key rows after the row after (from the first when nil) and deletes
// those whose key has no pending or dead message and that no transaction holds. It returns the
// last row it read when the page was full (where the next page starts), nil at the table's end,
// and how many rows it deleted.
func (s *Store) prunePage(ctx context.Context, after []byte, n int) ([]byte, int, error) {
	if after == nil {
		after = []byte{}
	}
	rows, err := s.db.QueryContext(ctx, "SELECT lock_key, msg_key FROM "+s.keys+" WHERE lock_key > ? ORDER BY lock_key LIMIT ?", after, n)
	if err != nil {
		return nil, 0, err
	}
	page, err := scanKeyRows(rows)
	if err != nil {
		return nil, 0, err
	}
	var last []byte
	if len(page) == n {
		last = page[len(page)-1].lock
	}
	idle, err := s.idleKeys(ctx, s.db, page)
	if err != nil || len(idle) == 0 {
		return last, 0, err
	}
	deleted := 0
	err = s.inTx(ctx, "prune keys", func(tx *sql.Tx) error {
		deleted = 0
		args := make([]any, 0, len(idle))
		for _, r := range idle {
			args = append(args, r.lock)
		}
		rows, err := tx.QueryContext(ctx, "SELECT lock_key, msg_key FROM "+s.keys+" WHERE lock_key IN ("+marks(len(args))+") FOR UPDATE SKIP LOCKED", args...)
		if err != nil {
			return err
		}
		held, err := scanKeyRows(rows)
		if err != nil {
			return err
		}
		if s.pruneHeld != nil {
			s.pruneHeld() // tests: writers come while the prune holds the rows
		}
		// Again, now that no writer can add to these keys: one may have committed since.
		gone, err := s.idleKeys(ctx, tx, held)
		if err != nil || len(gone) == 0 {
			return err
		}
		args = args[:0]
		for _, r := range gone {
			args = append(args, r.lock)
		}
		deleted, err = affected(tx.ExecContext(ctx, "DELETE FROM "+s.keys+" WHERE lock_key IN ("+marks(len(args))+")", args...))
		return err
	})
	return last, deleted, err
}

// keyRow is a row of the key-lock table.
type keyRow struct {
	lock []byte
	key  string
}

func scanKeyRows(rows *sql.Rows) ([]keyRow, error) {
	defer rows.Close()
	var out []keyRow
	for rows.Next() {
		var r keyRow
		if err := rows.Scan(&r.lock, &r.key); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// idleKeys returns the rows whose key has no pending or dead message. A row whose msg_key is
// empty was written before the key table recorded keys: nothing tells its key, and it is only
// ever read when no Add holds it, so it is idle too.
func (s *Store) idleKeys(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, rows []keyRow) ([]keyRow, error) {
	var keys []any
	for _, r := range rows {
		if r.key != "" {
			keys = append(keys, r.key)
		}
	}
	live := map[string]bool{}
	if len(keys) > 0 {
		// One probe per status and key (a loose index scan), never a key's backlog.
		r, err := q.QueryContext(ctx, "SELECT msg_key FROM "+s.table+" FORCE INDEX ("+keyIndex+") WHERE status IN ('pending', 'dead') AND msg_key IN ("+
			marks(len(keys))+") GROUP BY status, msg_key", keys...)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		for r.Next() {
			var k string
			if err := r.Scan(&k); err != nil {
				return nil, err
			}
			live[padded(k)] = true
		}
		if err := r.Err(); err != nil {
			return nil, err
		}
	}
	var idle []keyRow
	for _, r := range rows {
		if !live[padded(r.key)] {
			idle = append(idle, r)
		}
	}
	return idle, nil
}

// padded is k as the table's collation compares it: utf8mb4_bin pads, so trailing spaces do
// not count and "a" and "a " group as one key.
func padded(k string) string { return strings.TrimRight(k, " ") }
