package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/txoutbox/outbox/backend"
)

// DeleteDelivered deletes at most limit messages delivered more than olderThan ago by the
// database's clock, oldest first, and returns how many (outbox.Retention). It only finds rows when
// KeepDelivered is set.
func (s *Store) DeleteDelivered(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("postgres: delete delivered: %w", err)
	}
	if limit <= 0 {
		return 0, fmt.Errorf("postgres: delete delivered: %w", backend.InvalidArgument("limit", "must be positive"))
	}
	tag, err := s.pool.Exec(ctx, s.q.deleteDelivered, olderThan.Microseconds(), limit)
	if err != nil {
		return 0, fmt.Errorf("postgres: delete delivered: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
