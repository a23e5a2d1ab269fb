package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Add stores msgs inside the caller's transaction, in one statement, and signals listening
// relays; the signal, like the rows, only takes effect if tx commits. In WAL mode the statement
// writes them into the WAL instead (pg_logical_emit_message), which the slot streams on commit. It runs backend.Prepare first
// (write hooks, IDs, CreatedAt, validation), so a bad message fails here, naming its field, and
// nothing is written.
func (s *Store) Add(ctx context.Context, tx pgx.Tx, msgs ...*outbox.Message) error {
	if write, err := s.prepare(ctx, tx == nil, msgs); !write {
		return err
	}
	if s.wal != nil {
		return s.addWAL(ctx, tx, msgs)
	}
	cols := columnsOf(msgs)
	notify := s.gate.inTx()
	locks := s.lockIDs(msgs)
	var err error
	switch {
	case len(msgs) == 1 && len(locks) == 0:
		_, err = tx.Exec(ctx, s.q.addOne, cols.ids[0], cols.types[0], cols.keys[0], cols.payloads[0], cols.results[0], cols.headers[0], cols.created[0], s.channel, notify)
	case len(msgs) == 1:
		_, err = tx.Exec(ctx, s.q.addOneKeyed, cols.ids[0], cols.types[0], cols.keys[0], cols.payloads[0], cols.results[0], cols.headers[0], cols.created[0], s.channel, notify, locks[0])
	default:
		_, err = tx.Exec(ctx, s.q.add, cols.ids, cols.types, cols.keys, cols.payloads, cols.results, cols.headers, cols.created, s.channel, notify, locks)
	}
	if err != nil {
		return fmt.Errorf("postgres: add %d message(s) to %s: %w", len(msgs), s.table, err)
	}
	return nil
}

// AddSQL is Add for database/sql users: it stores msgs inside tx, which may come from any
// PostgreSQL driver (pgx's stdlib, lib/pq), since the batch travels as one JSON parameter.
func (s *Store) AddSQL(ctx context.Context, tx *sql.Tx, msgs ...*outbox.Message) error {
	if write, err := s.prepare(ctx, tx == nil, msgs); !write {
		return err
	}
	if s.wal != nil {
		return s.addWALSQL(ctx, tx, msgs)
	}
	// Payload, result and headers travel as JSON strings holding the JSON text, so the stored
	// text is byte for byte what Add would store (encoding/json would compact it).
	type row struct {
		ID        string    `json:"id"`
		Type      string    `json:"type"`
		Key       string    `json:"key"`
		Payload   string    `json:"payload"`
		Result    *string   `json:"result"`
		Headers   *string   `json:"headers"`
		CreatedAt time.Time `json:"created_at"`
	}
	cols := columnsOf(msgs)
	rows := make([]row, len(msgs))
	for i := range msgs {
		rows[i] = row{cols.ids[i], cols.types[i], cols.keys[i], cols.payloads[i], cols.results[i], cols.headers[i], cols.created[i]}
	}
	doc, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("postgres: add: encode batch: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.q.addJSON, string(doc), s.channel, s.gate.inTx(), int8Array(s.lockIDs(msgs))); err != nil {
		return fmt.Errorf("postgres: add %d message(s) to %s: %w", len(msgs), s.table, err)
	}
	return nil
}

// prepare runs what Add and AddSQL check before writing: an open store, a transaction, and
// backend.Prepare on msgs. It reports write=false with a nil error when there is nothing to write.
func (s *Store) prepare(ctx context.Context, noTx bool, msgs []*outbox.Message) (write bool, err error) {
	if err := s.checkOpen(); err != nil {
		return false, fmt.Errorf("postgres: add: %w", err)
	}
	if noTx {
		return false, fmt.Errorf("postgres: add: %w", backend.InvalidArgument("tx", "is nil"))
	}
	if len(msgs) == 0 {
		return false, nil
	}
	err = backend.Prepare(ctx, msgs, backend.WriteOptions{MaxPayloadBytes: s.cfg.MaxPayloadBytes, Hooks: s.cfg.WriteHooks})
	if err != nil {
		return false, fmt.Errorf("postgres: add: %w", err)
	}
	return true, nil
}

// lockIDs returns the advisory locks Add takes for the keys of msgs, one per keyed message (the
// query takes each distinct one once, in sorted order), each held until the writing transaction
// ends. Writers of one key therefore take turns: the second waits for the first to commit or
// roll back before its rows get their seq, so for one key seq order is commit order, and an
// ordered relay can never publish a later-committing writer's message first. Writers of
// different keys do not wait for each other (except on a 64-bit hash collision, which only costs
// a wait). Sorting means one Add never deadlocks with itself; two transactions that each add two
// keys in opposite orders can deadlock, which PostgreSQL detects and resolves by aborting one,
// as with row locks. The locks live in PostgreSQL's shared lock table (max_locks_per_transaction
// times max_connections slots, 6400 by default), so one transaction that writes events for
// thousands of distinct keys needs that setting raised.
func (s *Store) lockIDs(msgs []*outbox.Message) []int64 {
	var ids []int64
	for _, m := range msgs {
		if m.Key == "" {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(s.lockSpace))
		h.Write([]byte(m.Key))
		ids = append(ids, int64(h.Sum64()))
	}
	return ids
}

// int8Array is ids as PostgreSQL array text, the form every database/sql driver passes.
func int8Array(ids []int64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatInt(id, 10)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// columns is a batch of messages as one array per column, for unnest.
type columns struct {
	ids, types, keys, payloads []string
	results, headers           []*string
	created                    []time.Time
}

func columnsOf(msgs []*outbox.Message) columns {
	n := len(msgs)
	c := columns{
		ids: make([]string, n), types: make([]string, n), keys: make([]string, n), payloads: make([]string, n),
		results: make([]*string, n), headers: make([]*string, n), created: make([]time.Time, n),
	}
	for i, m := range msgs {
		c.ids[i], c.types[i], c.keys[i], c.payloads[i], c.created[i] = m.ID, m.Type, m.Key, string(m.Payload), m.CreatedAt
		if len(m.Result) > 0 {
			r := string(m.Result)
			c.results[i] = &r
		}
		if len(m.Headers) > 0 {
			b, _ := json.Marshal(m.Headers) // a map of strings always encodes
			h := string(b)
			c.headers[i] = &h
		}
	}
	return c
}

// Execute is the origin package's executeWithOutbox: it begins a transaction on the store's
// pool, runs fn in it, stores msgs (each carrying fn's result as JSON in Result, unless it has
// one already) and commits. When fn returns an error, Add fails, the commit fails or fn panics,
// everything is rolled back, nothing is ever published, and the error is returned (the panic
// re-raised). It holds one pooled connection at a time, so concurrent callers cannot deadlock
// the pool however small it is. In WAL mode the events and the COMMIT travel in one round trip,
// so the events cost the transaction no round trip of their own.
func Execute[T any](ctx context.Context, s *Store, fn func(ctx context.Context, tx pgx.Tx) (T, error), msgs ...*outbox.Message) (result T, err error) {
	var zero T
	if s == nil {
		return zero, fmt.Errorf("postgres: execute: %w", backend.InvalidArgument("store", "is nil"))
	}
	if fn == nil {
		return zero, fmt.Errorf("postgres: execute: %w", backend.InvalidArgument("fn", "is nil"))
	}
	if err := s.checkOpen(); err != nil {
		return zero, fmt.Errorf("postgres: execute: %w", err)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return zero, fmt.Errorf("postgres: execute: begin: %w", err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return zero, fmt.Errorf("postgres: execute: begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			// Rollback needs a live context even when ctx was what failed.
			rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = tx.Rollback(rbCtx)
			cancel()
		}
	}()

	result, err = fn(ctx, tx)
	if err != nil {
		return zero, err
	}
	if len(msgs) > 0 {
		encoded, err := json.Marshal(result)
		if err != nil {
			return zero, fmt.Errorf("postgres: execute: encode result as JSON: %w", err)
		}
		for _, m := range msgs {
			if m != nil && len(m.Result) == 0 && string(encoded) != "null" {
				m.Result = encoded
			}
		}
		if s.wal != nil {
			if write, err := s.prepare(ctx, false, msgs); err != nil {
				return zero, err
			} else if write {
				if err := s.commitWAL(ctx, conn.Conn(), msgs); err != nil {
					return zero, err
				}
				committed = true
				return result, nil
			}
		} else if err := s.Add(ctx, tx, msgs...); err != nil {
			return zero, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return zero, fmt.Errorf("postgres: execute: commit: %w", err)
	}
	committed = true
	return result, nil
}
