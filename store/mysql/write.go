package mysql

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Add stores msgs inside the caller's transaction, in one INSERT. It runs backend.Prepare first
// (write hooks, IDs, CreatedAt, validation), so a bad message fails here, naming its field, and
// nothing is written. Every key written has its row of the key-lock table locked until tx ends,
// before any of the INSERT's seqs is allocated: writers of one key take turns, so for one key
// seq order is commit order. Add cannot see the commit: call Notify after it to wake this
// process's relay at once, or let it find the messages at its next poll.
//
// The table's BEFORE INSERT trigger (schema.go) takes the lock of each row's key. That alone is
// enough, and the INSERT is Add's only statement, when the first message carries the Add's only
// key (one event per transaction, or several of one key) or no message has a key: the server
// runs the first row's trigger before it allocates any of the statement's seqs (triggerBody
// says why and where that is documented). Otherwise (several keys, or a keyless first row)
// Add locks the keys first, sorted, in a statement of their own, so that one Add never
// deadlocks with another and every lock is held before the first seq; the trigger's lock is
// then a no-op on a row already held.
func (s *Store) Add(ctx context.Context, tx *sql.Tx, msgs ...*outbox.Message) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("mysql: add: %w", err)
	}
	if tx == nil {
		return fmt.Errorf("mysql: add: %w", backend.InvalidArgument("tx", "is nil"))
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := backend.Prepare(ctx, msgs, backend.WriteOptions{MaxPayloadBytes: s.cfg.MaxPayloadBytes, Hooks: s.cfg.WriteHooks}); err != nil {
		return fmt.Errorf("mysql: add: %w", err)
	}
	if locks := s.keyLocks(msgs); len(locks) > 1 || (len(locks) == 1 && msgs[0].Key == "") {
		args := make([]any, 0, 2*len(locks))
		for _, l := range locks {
			args = append(args, l.lock, l.key)
		}
		q := "INSERT INTO " + s.keys + " (lock_key, msg_key) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?),", len(locks)), ",") +
			" ON DUPLICATE KEY UPDATE lock_key = lock_key"
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("mysql: add: lock keys: %w", s.explain(err))
		}
	}
	args := make([]any, 0, 7*len(msgs))
	for _, m := range msgs {
		var result, headers any
		if len(m.Result) > 0 {
			result = string(m.Result)
		}
		if len(m.Headers) > 0 {
			b, _ := json.Marshal(m.Headers) // a map of strings always encodes
			headers = string(b)
		}
		args = append(args, m.ID, m.Type, m.Key, string(m.Payload), result, headers, m.CreatedAt.UTC())
	}
	q := "INSERT INTO " + s.table + " (id, type, msg_key, payload, result, headers, created_at, available_at) VALUES " +
		strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6)),", len(msgs)), ",")
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("mysql: add %d message(s) to %s: %w", len(msgs), s.table, s.explain(err))
	}
	return nil
}

// keyLocks returns the key-lock rows of msgs' keys, distinct and sorted by lock_key. The row
// records its key so that the prune (prune.go) can tell whether the key still has messages.
func (s *Store) keyLocks(msgs []*outbox.Message) []keyRow {
	var locks []keyRow
	for _, m := range msgs {
		if m.Key != "" {
			sum := sha256.Sum256([]byte(m.Key))
			locks = append(locks, keyRow{lock: sum[:], key: m.Key})
		}
	}
	slices.SortFunc(locks, func(a, b keyRow) int { return bytes.Compare(a.lock, b.lock) })
	return slices.CompactFunc(locks, func(a, b keyRow) bool { return bytes.Equal(a.lock, b.lock) })
}

// Execute is the origin package's executeWithOutbox: it begins a transaction, runs fn in it,
// stores msgs (each carrying fn's result as JSON in Result, unless it has one already) and
// commits. When fn fails, Add fails, the commit fails or fn panics, everything is rolled back and
// the error is returned (the panic re-raised). It holds one connection at a time.
func Execute[T any](ctx context.Context, s *Store, fn func(ctx context.Context, tx *sql.Tx) (T, error), msgs ...*outbox.Message) (result T, err error) {
	var zero T
	if s == nil {
		return zero, fmt.Errorf("mysql: execute: %w", backend.InvalidArgument("store", "is nil"))
	}
	if fn == nil {
		return zero, fmt.Errorf("mysql: execute: %w", backend.InvalidArgument("fn", "is nil"))
	}
	if err := s.checkOpen(); err != nil {
		return zero, fmt.Errorf("mysql: execute: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return zero, fmt.Errorf("mysql: execute: begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	if result, err = fn(ctx, tx); err != nil {
		return zero, err
	}
	if len(msgs) > 0 {
		encoded, err := json.Marshal(result)
		if err != nil {
			return zero, fmt.Errorf("mysql: execute: encode result as JSON: %w", err)
		}
		for _, m := range msgs {
			if m != nil && len(m.Result) == 0 && string(encoded) != "null" {
				m.Result = encoded
			}
		}
		if err := s.Add(ctx, tx, msgs...); err != nil {
			return zero, err
		}
	}
	if err := tx.Commit(); err != nil {
		return zero, fmt.Errorf("mysql: execute: commit: %w", err)
	}
	committed = true
	if len(msgs) > 0 {
		s.Notify()
	}
	return result, nil
}
