package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/txoutbox/outbox/backend"
)

// DeleteDelivered implements outbox.Retention: it deletes at most limit messages delivered more
// than olderThan ago (this process's clock, as for every SQLite time), oldest first. Without
// KeepDelivered there are none.
func (s *Store) DeleteDelivered(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("sqlite: delete delivered: %w", err)
	}
	if limit <= 0 {
		return 0, fmt.Errorf("sqlite: delete delivered: %w", backend.InvalidArgument("limit", "must be positive"))
	}
	res, err := s.execWrite(ctx, `DELETE FROM `+s.q.table+` WHERE seq IN (
		SELECT seq FROM `+s.q.table+` WHERE status = 'delivered' AND delivered_at < ? ORDER BY delivered_at LIMIT ?)`,
		time.Now().Add(-olderThan).UnixMilli(), limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete delivered: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete delivered: %w", err)
	}
	return int(n), nil
}
