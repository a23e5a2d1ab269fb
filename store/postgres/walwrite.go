package postgres

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/txoutbox/outbox"
)

// ErrNoSlot is returned by a WAL-mode write when the replication slot does not exist (or lost
// its WAL): nothing would ever read the message, so it is not written. Create the slot with
// EnsureSchema or `outbox migrate` before the first write.
var ErrNoSlot = errors.New("the replication slot does not exist or lost its WAL")

// walContent encodes msgs for one pg_logical_emit_message.
func walContent(msgs []*outbox.Message) ([]byte, error) {
	if len(msgs) == 1 {
		return encodeWAL(msgs[0])
	}
	return encodeWALBatch(msgs)
}

// addWAL is Add in WAL mode: one statement that emits the messages into the WAL as one record.
func (s *Store) addWAL(ctx context.Context, tx pgx.Tx, msgs []*outbox.Message) error {
	content, err := walContent(msgs)
	if err != nil {
		return fmt.Errorf("postgres: add: %w", err)
	}
	sql, args := s.wal.emit(walEmit, walEmitChecked, content)
	_, err = tx.Exec(ctx, sql, args...)
	return s.emitted(len(msgs), err, len(args) == 3)
}

// addWALSQL is AddSQL in WAL mode. The content travels as base64 text, which every
// database/sql driver passes the same way.
func (s *Store) addWALSQL(ctx context.Context, tx *sql.Tx, msgs []*outbox.Message) error {
	content, err := walContent(msgs)
	if err != nil {
		return fmt.Errorf("postgres: add: %w", err)
	}
	sql, args := s.wal.emit(walEmitText, walEmitTextChecked, base64.StdEncoding.EncodeToString(content))
	_, err = tx.ExecContext(ctx, sql, args...)
	return s.emitted(len(msgs), err, len(args) == 3)
}

// slotCheckInterval is how often a writer checks that the slot exists (see walEmitChecked).
const slotCheckInterval = time.Second

// emit returns the statement and arguments of the next write of content: with the slot check
// when the last one is older than slotCheckInterval.
func (w *walStream) emit(bare, checked string, content any) (string, []any) {
	if time.Since(time.Unix(0, w.slotChecked.Load())) < slotCheckInterval {
		return bare, []any{w.prefix, content}
	}
	return checked, []any{w.prefix, content, w.cfg.Slot}
}

// emitted describes a failed WAL write; the server's error for a missing slot becomes ErrNoSlot.
// A checked write that succeeded records the time of its check.
func (s *Store) emitted(n int, err error, checked bool) error {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		if checked {
			s.wal.slotChecked.Store(time.Now().UnixNano())
		}
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "42704" && strings.Contains(pgErr.Message, "outbox: replication slot"):
		return fmt.Errorf("postgres: add %d message(s): slot %q: %w", n, s.wal.cfg.Slot, ErrNoSlot)
	}
	return fmt.Errorf("postgres: add %d message(s) to the WAL: %w", n, err)
}

// commitWAL stores msgs and commits the transaction open on conn in one round trip: the write
// and the COMMIT travel together, so a WAL-mode Execute costs the business transaction no extra
// round trip. When the write fails the server skips the COMMIT and the transaction stays open
// (aborted) for the caller to roll back.
func (s *Store) commitWAL(ctx context.Context, conn *pgx.Conn, msgs []*outbox.Message) error {
	content, err := walContent(msgs)
	if err != nil {
		return fmt.Errorf("postgres: add: %w", err)
	}
	sql, args := s.wal.emit(walEmit, walEmitChecked, content)
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	b.Queue("COMMIT")
	results := conn.SendBatch(ctx, b)
	_, emitErr := results.Exec()
	tag, commitErr := results.Exec()
	closeErr := results.Close()
	switch {
	case emitErr != nil:
		return s.emitted(len(msgs), emitErr, false)
	case commitErr != nil:
		return fmt.Errorf("postgres: execute: commit: %w", commitErr)
	case closeErr != nil:
		return fmt.Errorf("postgres: execute: commit: %w", closeErr)
	case tag.String() != "COMMIT":
		return fmt.Errorf("postgres: execute: commit: %w", pgx.ErrTxCommitRollback)
	}
	return s.emitted(len(msgs), nil, len(args) == 3)
}
