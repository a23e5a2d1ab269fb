package postgres

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/txoutbox/outbox/core"
)

// ErrNoSlot is returned by a WAL-mode write when the replication slot does not exist (or lost
// its WAL): nothing would ever read the message, so it is not written. Create the slot with
// EnsureSchema or `outbox migrate` before the first write.
var ErrNoSlot = errors.New("the replication slot does not exist or lost its WAL")

// walContent encodes msgs for one pg_logical_emit_message.
func walContent(msgs []*core.Message) ([]byte, error) {
	if len(msgs) == 1 {
		return encodeWAL(msgs[0])
	}
	return encodeWALBatch(msgs)
}

// addWAL is Add in WAL mode: one statement that emits the messages into the WAL as one record.
func (s *Store) addWAL(ctx context.Context, tx pgx.Tx, msgs []*core.Message) error {
	content, err := walContent(msgs)
	if err != nil {
		return fmt.Errorf("postgres: add: %w", err)
	}
	var n int
	err = tx.QueryRow(ctx, walEmit, s.wal.prefix, content, s.wal.cfg.Slot).Scan(&n)
	return s.emitted(len(msgs), n, err)
}

// addWALSQL is AddSQL in WAL mode. The content travels as base64 text, which every
// database/sql driver passes the same way.
func (s *Store) addWALSQL(ctx context.Context, tx *sql.Tx, msgs []*core.Message) error {
	content, err := walContent(msgs)
	if err != nil {
		return fmt.Errorf("postgres: add: %w", err)
	}
	var n int
	err = tx.QueryRowContext(ctx, walEmitText, s.wal.prefix, base64.StdEncoding.EncodeToString(content), s.wal.cfg.Slot).Scan(&n)
	return s.emitted(len(msgs), n, err)
}

func (s *Store) emitted(want, got int, err error) error {
	switch {
	case err != nil:
		return fmt.Errorf("postgres: add %d message(s) to the WAL: %w", want, err)
	case got != 1:
		return fmt.Errorf("postgres: add %d message(s): slot %q: %w", want, s.wal.cfg.Slot, ErrNoSlot)
	}
	return nil
}
