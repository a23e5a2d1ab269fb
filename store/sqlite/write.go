package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// insertChunk is how many rows one INSERT statement carries: 8 parameters each stays far below
// SQLite's 32766 bound, and the SQL of each shape (1..insertChunk rows) is built once.
const insertChunk = 64

// Add stores msgs in tx, so they commit or roll back with the caller's business change. It runs
// backend.Prepare on them (write hooks, ID, CreatedAt, validation) and writes them with one
// multi-row INSERT per insertChunk messages. tx may come from any *sql.DB on the same file.
//
// A store opened from Path or DSN wakes its relay when tx commits. On a Config.DB, call Notify
// after committing, or let the relay poll.
func (s *Store) Add(ctx context.Context, tx *sql.Tx, msgs ...*outbox.Message) error {
	return s.add(ctx, tx, nil, msgs)
}

// add is Add, with the INSERT already prepared on the store's database when stmt is not nil
// (Execute's transaction is always on that database; a caller's may not be).
func (s *Store) add(ctx context.Context, tx *sql.Tx, stmt *sql.Stmt, msgs []*outbox.Message) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("sqlite: add: %w", err)
	}
	if tx == nil {
		return fmt.Errorf("sqlite: add: %w", backend.InvalidArgument("tx", "is nil"))
	}
	if len(msgs) == 0 {
		return nil
	}
	err := backend.Prepare(ctx, msgs, backend.WriteOptions{MaxPayloadBytes: s.cfg.MaxPayloadBytes, Hooks: s.cfg.WriteHooks})
	if err != nil {
		return fmt.Errorf("sqlite: add: %w", err)
	}
	// Due at once, even when the caller set a CreatedAt in the future.
	due := time.Now().UnixMilli()
	for start := 0; start < len(msgs); start += insertChunk {
		chunk := msgs[start:min(start+insertChunk, len(msgs))]
		args := make([]any, 0, 8*len(chunk))
		for _, m := range chunk {
			var headers any // NULL when there are none
			if len(m.Headers) > 0 {
				b, err := json.Marshal(m.Headers)
				if err != nil {
					return fmt.Errorf("sqlite: add: message %s: headers: %w", m.ID, err)
				}
				headers = string(b)
			}
			var result any
			if len(m.Result) > 0 {
				result = string(m.Result)
			}
			args = append(args, m.ID, m.Type, m.Key, string(m.Payload), result, headers, m.CreatedAt.UnixMilli(), due)
		}
		var err error
		if stmt != nil && len(chunk) == len(msgs) {
			_, err = tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, s.q.insert(len(chunk)), args...)
		}
		if err != nil {
			return fmt.Errorf("sqlite: add: %w", err)
		}
	}
	return nil
}

// Execute runs fn in a new transaction and stores msgs in the same transaction, the origin
// package's executeWithOutbox: fn's result, as JSON, becomes the Result of every message that
// has none. It commits when fn and the write succeed, and rolls back otherwise; a panic in fn
// rolls back and is re-raised. It returns fn's result.
//
// Execute holds one connection from start to end: fn must use tx, not the store's DB, for its
// queries (with the default single connection, a query on DB inside fn waits for Execute).
func Execute[T any](ctx context.Context, s *Store, fn func(ctx context.Context, tx *sql.Tx) (T, error), msgs ...*outbox.Message) (T, error) {
	var zero T
	if err := s.checkOpen(); err != nil {
		return zero, fmt.Errorf("sqlite: execute: %w", err)
	}
	if fn == nil {
		return zero, fmt.Errorf("sqlite: execute: %w", backend.InvalidArgument("fn", "is nil"))
	}
	// Prepared before the transaction takes a connection: with one connection, preparing
	// inside it would wait for itself.
	stmt := s.insertStmt(ctx, len(msgs))
	tx, end, err := s.beginWrite(ctx)
	if err != nil {
		return zero, fmt.Errorf("sqlite: execute: begin: %w", err)
	}
	// Rolls back on every return and while a panic unwinds (after Commit, it only unlocks).
	defer end()

	res, err := fn(ctx, tx)
	if err != nil {
		return zero, err
	}
	if err := setResult(msgs, res); err != nil {
		return zero, fmt.Errorf("sqlite: execute: %w", err)
	}
	if err := s.add(ctx, tx, stmt, msgs); err != nil {
		return zero, err
	}
	if err := tx.Commit(); err != nil {
		return zero, fmt.Errorf("sqlite: execute: commit: %w", err)
	}
	if !s.hooked && len(msgs) > 0 {
		s.signal()
	}
	return res, nil
}

// setResult sets the Result of each message that has none to res as JSON. A nil result stays
// absent (the envelope's "result" is null either way).
func setResult(msgs []*outbox.Message, res any) error {
	var raw json.RawMessage
	for _, m := range msgs {
		if m == nil || len(m.Result) > 0 {
			continue
		}
		if raw == nil {
			b, err := json.Marshal(res)
			if err != nil {
				return fmt.Errorf("result as JSON: %w", err)
			}
			if string(b) == "null" {
				return nil
			}
			raw = b
		}
		m.Result = raw
	}
	return nil
}

// maxPreparedRows bounds the INSERT shapes Execute keeps prepared: the common few events per
// business transaction. Larger batches amortise their one-off prepare over their rows.
const maxPreparedRows = 8

// insertStmt returns the prepared INSERT of n rows, preparing it on first use. Preparing is a
// large share of a small write: SQLite compiles the table's triggers into the statement. It
// returns nil when it cannot prepare (the table is missing, say): Add then runs the statement
// unprepared and reports the real error.
func (s *Store) insertStmt(ctx context.Context, n int) *sql.Stmt {
	if n < 1 || n > maxPreparedRows {
		return nil
	}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if st := s.stmts[n]; st != nil {
		return st
	}
	st, err := s.db.PrepareContext(ctx, s.q.insert(n))
	if err != nil {
		return nil
	}
	s.stmts[n] = st
	return st
}
