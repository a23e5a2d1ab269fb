package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/txoutbox/outbox/backend"
)

// DeleteOlderThan deletes at most limit records processed more than olderThan ago, by the
// database's clock, and returns how many. Call it until it returns fewer than limit (or use
// Prune); no single statement deletes more than limit rows, and concurrent callers skip each
// other's rows instead of waiting. olderThan must outlast the broker's redelivery horizon (see
// DefaultRetention): a message redelivered after its record is gone is processed again.
func (in *Inbox) DeleteOlderThan(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	if err := checkRetention(olderThan, limit); err != nil {
		return 0, err
	}
	tag, err := in.db.ExecContext(ctx, in.q.prune, olderThan.Milliseconds(), limit)
	if err != nil {
		return 0, fmt.Errorf("%s: delete older than %v: %w", component, olderThan, err)
	}
	n, err := tag.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("%s: delete older than %v: %w", component, olderThan, err)
	}
	return int(n), nil
}

// Prune deletes every record older than olderThan in batches of DefaultPruneBatch and returns
// how many it deleted. It stops early, with what it deleted so far, when ctx ends.
func (in *Inbox) Prune(ctx context.Context, olderThan time.Duration) (int, error) {
	return backend.PruneInBatches(ctx, DefaultPruneBatch, func(ctx context.Context, limit int) (int, error) {
		return in.DeleteOlderThan(ctx, olderThan, limit)
	})
}

func checkRetention(olderThan time.Duration, limit int) error {
	if err := backend.CheckInboxRetention(olderThan, limit, time.Millisecond); err != nil {
		return invalid("delete older than", err)
	}
	return nil
}
