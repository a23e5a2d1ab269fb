package mongo

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// DeleteDelivered deletes at most limit messages delivered more than olderThan ago by the
// server's clock and returns how many.
// It reads their IDs first and deletes by ID, so one call never deletes more than limit
// documents however many are old. Without KeepDelivered there is nothing to delete.
func (s *Store) DeleteDelivered(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	if err := s.checkOpen("delete delivered"); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, fmt.Errorf("mongo: delete delivered: %w", backend.InvalidArgument("limit", "must be positive"))
	}
	cutoff := s.now(ctx).Add(-olderThan)
	old := bson.D{
		{Key: fStatus, Value: string(outbox.StatusDelivered)},
		{Key: fDeliveredAt, Value: bson.D{{Key: "$lt", Value: cutoff.UTC()}}},
	}
	cur, err := s.coll.Find(ctx, old, options.Find().
		SetSort(bson.D{{Key: fDeliveredAt, Value: 1}}).
		SetLimit(int64(limit)).
		SetProjection(bson.D{{Key: fID, Value: 1}}))
	if err != nil {
		return 0, s.wrap("delete delivered", err)
	}
	var rows []bson.Raw
	if err := cur.All(ctx, &rows); err != nil {
		return 0, s.wrap("delete delivered", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	ids := make(bson.A, len(rows))
	for i, r := range rows {
		ids[i] = r.Lookup(fID)
	}
	res, err := s.coll.DeleteMany(ctx, append(old, bson.E{Key: fID, Value: bson.D{{Key: "$in", Value: ids}}}))
	if err != nil {
		return 0, s.wrap("delete delivered", err)
	}
	return int(res.DeletedCount), nil
}
