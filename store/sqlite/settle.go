package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Ack implements outbox.Store: it deletes the messages, or marks them delivered with
// KeepDelivered, when the claim with token still holds their lease, and returns how many.
func (s *Store) Ack(ctx context.Context, token string, ids []string) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("sqlite: ack: %w", err)
	}
	if err := backend.CheckToken(token); err != nil {
		return 0, fmt.Errorf("sqlite: ack: %w", err)
	}
	ids = backend.SettleableIDs(ids)
	if len(ids) == 0 {
		return 0, nil
	}
	now := time.Now().UnixMilli()
	settled := 0
	err := s.inTx(ctx, "ack", func(tx *sql.Tx) error {
		for start := 0; start < len(ids); start += idChunk {
			chunk := ids[start:min(start+idChunk, len(ids))]
			var query string
			args := make([]any, 0, len(chunk)+2)
			if s.cfg.KeepDelivered {
				query = `UPDATE ` + s.q.table + ` SET status = 'delivered', delivered_at = ?, lease_owner = NULL WHERE `
				args = append(args, now)
			} else {
				query = `DELETE FROM ` + s.q.table + ` WHERE `
			}
			query += `status = 'pending' AND lease_owner = ? AND id IN (` + placeholders(len(chunk)) + `)`
			args = append(args, token)
			for _, id := range chunk {
				args = append(args, id)
			}
			res, err := tx.ExecContext(ctx, query, args...)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			settled += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return settled, nil
}

// Nack implements outbox.Store for the messages whose lease the claim with token still holds, and
// returns how many it settled. SQLite has no server: "now" is this process's clock, which is
// also the clock of every writer and claimer of the file on this host.
func (s *Store) Nack(ctx context.Context, token string, failures []outbox.Failure) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("sqlite: nack: %w", err)
	}
	if err := backend.CheckToken(token); err != nil {
		return 0, fmt.Errorf("sqlite: nack: %w", err)
	}
	if len(failures) == 0 {
		return 0, nil
	}
	now := time.Now()
	settled := 0
	err := s.inTx(ctx, "nack", func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE `+s.q.table+` SET
			attempts = attempts + ?, last_error = coalesce(?, last_error),
			lease_owner = NULL, available_at = ?,
			status = CASE WHEN ? THEN 'dead' ELSE 'pending' END,
			dead_at = CASE WHEN ? THEN ? END
			WHERE id = ? AND status = 'pending' AND lease_owner = ?`)
		if err != nil {
			return err
		}
		// The transaction closes its statements when it ends, and its Commit reports a broken
		// connection.
		defer func() { _ = stmt.Close() }()
		for _, f := range failures {
			release := f.Release && !f.Dead
			attempt, text := 1, any(backend.StorableText(f.Error))
			if release {
				attempt, text = 0, nil
			}
			retry := now.UnixMilli()
			if !f.Dead {
				retry = now.Add(max(f.Delay, 0)).UnixMilli()
			}
			res, err := stmt.ExecContext(ctx, attempt, text, retry, f.Dead, f.Dead, now.UnixMilli(), f.ID, token)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			settled += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return settled, nil
}
