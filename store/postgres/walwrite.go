package postgres

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/txoutbox/outbox/core"
)

// ErrNoSlot is returned by a WAL-mode write when the replication slot does not exist (or lost
// its WAL): nothing would ever read the message, so it is not written. Create the slot with
// EnsureSchema or `outbox migrate` before the first write.
var ErrNoSlot = errors.New("the replication slot does not exist or lost its WAL")

// walContents encodes msgs for pg_logical_emit_message.
func walContents(msgs []*core.Message) ([][]byte, error) {
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		b, err := encodeWAL(m)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// addWAL is Add in WAL mode: one statement that emits every message into the WAL.
func (s *Store) addWAL(ctx context.Context, tx pgx.Tx, msgs []*core.Message) error {
	contents, err := walContents(msgs)
	if err != nil {
		return fmt.Errorf("postgres: add: %w", err)
	}
	var n int
	if len(contents) == 1 {
		err = tx.QueryRow(ctx, walEmitOne, s.wal.prefix, contents[0], s.wal.cfg.Slot).Scan(&n)
	} else {
		err = tx.QueryRow(ctx, walEmitMany, s.wal.prefix, contents, s.wal.cfg.Slot).Scan(&n)
	}
	return s.emitted(len(msgs), n, err)
}

// addWALSQL is AddSQL in WAL mode.
func (s *Store) addWALSQL(ctx context.Context, tx *sql.Tx, msgs []*core.Message) error {
	contents, err := walContents(msgs)
	if err != nil {
		return fmt.Errorf("postgres: add: %w", err)
	}
	encoded := make([]string, len(contents))
	for i, c := range contents {
		encoded[i] = base64.StdEncoding.EncodeToString(c)
	}
	doc, _ := json.Marshal(encoded) // strings always encode
	var n int
	err = tx.QueryRowContext(ctx, walEmitJSON, s.wal.prefix, string(doc), s.wal.cfg.Slot).Scan(&n)
	return s.emitted(len(msgs), n, err)
}

func (s *Store) emitted(want, got int, err error) error {
	switch {
	case err != nil:
		return fmt.Errorf("postgres: add %d message(s) to the WAL: %w", want, err)
	case got != want:
		return fmt.Errorf("postgres: add %d message(s): slot %q: %w", want, s.wal.cfg.Slot, ErrNoSlot)
	}
	return nil
}
