package mysql

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Ack implements outbox.Store: it deletes the messages, or marks them delivered with
// KeepDelivered, when the claim with token still holds their lease, and returns how many.
func (s *Store) Ack(ctx context.Context, token string, ids []string) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("mysql: ack: %w", err)
	}
	if err := backend.CheckToken(token); err != nil {
		return 0, fmt.Errorf("mysql: ack: %w", err)
	}
	ids = backend.SettleableIDs(ids)
	if len(ids) == 0 {
		return 0, nil
	}
	settled := 0
	err := s.inTx(ctx, "ack", func(tx *sql.Tx) error {
		settled = 0 // a retried transaction counts again
		for start := 0; start < len(ids); start += idChunk {
			chunk := ids[start:min(start+idChunk, len(ids))]
			q := "DELETE FROM " + s.table
			if s.cfg.KeepDelivered {
				q = "UPDATE " + s.table + " SET status = 'delivered', delivered_at = " + now + ", lease_owner = NULL"
			}
			q += " WHERE status = 'pending' AND lease_owner = ? AND id IN (" + marks(len(chunk)) + ")"
			args := make([]any, 0, len(chunk)+1)
			args = append(args, token)
			for _, id := range chunk {
				args = append(args, id)
			}
			n, err := affected(tx.ExecContext(ctx, q, args...))
			if err != nil {
				return err
			}
			settled += n
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return settled, nil
}

// Nack implements outbox.Store for the messages whose lease the claim with token still holds,
// and returns how many it settled. Retry times are the server's clock plus the delay.
func (s *Store) Nack(ctx context.Context, token string, failures []outbox.Failure) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("mysql: nack: %w", err)
	}
	if err := backend.CheckToken(token); err != nil {
		return 0, fmt.Errorf("mysql: nack: %w", err)
	}
	valid := map[string]bool{}
	for _, id := range backend.SettleableIDs(idsOf(failures)) {
		valid[id] = true
	}
	if len(valid) == 0 {
		return 0, nil
	}
	settled := 0
	err := s.inTx(ctx, "nack", func(tx *sql.Tx) error {
		settled = 0
		stmt, err := tx.PrepareContext(ctx, "UPDATE "+s.table+` SET
	attempts = attempts + ?, last_error = COALESCE(?, last_error), lease_owner = NULL,
	status = IF(?, 'dead', 'pending'),
	dead_at = IF(?, `+now+`, NULL),
	available_at = IF(?, available_at, `+now+` + INTERVAL ? MICROSECOND)
WHERE id = ? AND status = 'pending' AND lease_owner = ?`)
		if err != nil {
			return err
		}
		// The transaction closes its statements when it ends, and its Commit reports a broken
		// connection.
		defer func() { _ = stmt.Close() }()
		for _, f := range failures {
			if !valid[f.ID] {
				continue
			}
			release := f.Release && !f.Dead
			attempt, text := 1, any(backend.StorableText(f.Error))
			if release {
				attempt, text = 0, nil
			}
			n, err := affected(stmt.ExecContext(ctx, attempt, text, f.Dead, f.Dead, f.Dead, max(f.Delay, 0).Microseconds(), f.ID, token))
			if err != nil {
				return err
			}
			settled += n
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return settled, nil
}

func idsOf(failures []outbox.Failure) []string {
	ids := make([]string, len(failures))
	for i, f := range failures {
		ids[i] = f.ID
	}
	return ids
}

func affected(res sql.Result, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
