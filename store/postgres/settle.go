package postgres

import (
	"context"
	"fmt"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// ackTable marks the rows delivered, or deletes them, depending on KeepDelivered, and returns
// how many it settled. Only rows still leased under token are touched, so a claim whose lease
// expired and was taken over cannot acknowledge on the new holder's behalf.
func (s *Store) ackTable(ctx context.Context, token string, ids []string) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("postgres: ack: %w", err)
	}
	if err := backend.CheckToken(token); err != nil {
		return 0, fmt.Errorf("postgres: ack: %w", err)
	}
	ids = backend.SettleableIDs(ids)
	if len(ids) == 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, s.q.ack, ids, token)
	if err != nil {
		return 0, fmt.Errorf("postgres: ack %d message(s): %w", len(ids), err)
	}
	return int(tag.RowsAffected()), nil
}

// nackTable records failed publishes and releases for the rows still leased under token, in one
// statement, and returns how many it settled. Retry times are computed with the database's
// clock.
func (s *Store) nackTable(ctx context.Context, token string, failures []outbox.Failure) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("postgres: nack: %w", err)
	}
	if err := backend.CheckToken(token); err != nil {
		return 0, fmt.Errorf("postgres: nack: %w", err)
	}
	n := len(failures)
	ids, texts, delays := make([]string, 0, n), make([]string, 0, n), make([]int64, 0, n)
	dead, release := make([]bool, 0, n), make([]bool, 0, n)
	for _, f := range failures {
		if len(backend.SettleableIDs([]string{f.ID})) == 0 {
			continue // not a message of this store: unknown IDs are ignored
		}
		ids, texts = append(ids, f.ID), append(texts, backend.StorableText(f.Error))
		delays = append(delays, max(f.Delay, 0).Microseconds())
		dead, release = append(dead, f.Dead), append(release, f.Release && !f.Dead)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, s.q.nack, ids, texts, delays, dead, release, token)
	if err != nil {
		return 0, fmt.Errorf("postgres: nack %d message(s): %w", len(ids), err)
	}
	return int(tag.RowsAffected()), nil
}
