package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/txoutbox/outbox/backend"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// DeleteOlderThan deletes at most limit records processed more than olderThan ago, by the
// server's clock ($$NOW), and returns how many. It reads their _ids first and deletes by _id,
// so one call never deletes more than limit documents; call it until it returns fewer than
// limit (or use Prune). olderThan must outlast the broker's redelivery horizon (see
// DefaultRetention): a message redelivered after its record is gone is processed again.
func (in *Inbox) DeleteOlderThan(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	if err := checkRetention(olderThan, limit); err != nil {
		return 0, err
	}
	old := bson.D{{Key: "$expr", Value: bson.D{{Key: "$lt", Value: bson.A{
		"$" + fProcessedAt,
		bson.D{{Key: "$subtract", Value: bson.A{"$$NOW", olderThan.Milliseconds()}}},
	}}}}}
	cur, err := in.coll.Find(ctx, old, options.Find().
		SetSort(bson.D{{Key: fProcessedAt, Value: 1}}).
		SetLimit(int64(limit)).
		SetProjection(bson.D{{Key: fID, Value: 1}}))
	if err != nil {
		return 0, fmt.Errorf("%s: delete older than %v: %w", component, olderThan, err)
	}
	var rows []bson.Raw
	if err := cur.All(ctx, &rows); err != nil {
		return 0, fmt.Errorf("%s: delete older than %v: %w", component, olderThan, err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	ids := make(bson.A, len(rows))
	for i, r := range rows {
		ids[i] = r.Lookup(fID)
	}
	res, err := in.coll.DeleteMany(ctx, append(old, bson.E{Key: fID, Value: bson.D{{Key: "$in", Value: ids}}}))
	if err != nil {
		return 0, fmt.Errorf("%s: delete older than %v: %w", component, olderThan, err)
	}
	return int(res.DeletedCount), nil
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
