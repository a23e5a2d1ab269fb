package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/txoutbox/outbox/backend"
)

// DeleteDelivered implements outbox.Retention: it deletes at most limit messages delivered more
// than olderThan ago by the server's clock, oldest delivery first. Without KeepDelivered there
// are none.
func (s *Store) DeleteDelivered(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("mysql: delete delivered: %w", err)
	}
	if limit <= 0 {
		return 0, fmt.Errorf("mysql: delete delivered: %w", backend.InvalidArgument("limit", "must be positive"))
	}
	var n int
	err := s.inTx(ctx, "delete delivered", func(tx *sql.Tx) error {
		var err error
		n, err = affected(tx.ExecContext(ctx, "DELETE FROM "+s.table+" WHERE status = 'delivered' AND delivered_at < "+now+
			" - INTERVAL ? MICROSECOND ORDER BY delivered_at LIMIT ?", olderThan.Microseconds(), limit))
		return err
	})
	return n, err
}
