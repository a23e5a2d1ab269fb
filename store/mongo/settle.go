package mongo

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// settleChunk bounds the IDs of one statement.
const settleChunk = 1000

// leasedBy matches the given pending messages still leased by the claim with token: an ack or
// nack from a claim whose lease expired and was taken over is ignored.
func leasedBy(token string, ids bson.A) bson.D {
	return bson.D{
		{Key: fID, Value: bson.D{{Key: "$in", Value: ids}}},
		{Key: fStatus, Value: string(outbox.StatusPending)},
		{Key: fClaim, Value: token},
	}
}

// Ack deletes the messages leased by the claim with token, or with KeepDelivered marks them
// delivered, and returns how many it settled.
func (s *Store) Ack(ctx context.Context, token string, ids []string) (int, error) {
	if err := s.checkOpen("ack"); err != nil {
		return 0, err
	}
	if err := backend.CheckToken(token); err != nil {
		return 0, fmt.Errorf("mongo: ack: %w", err)
	}
	ids = backend.SettleableIDs(ids)
	var now time.Time
	if s.cfg.KeepDelivered && len(ids) > 0 {
		now = s.now(ctx)
	}
	settled := 0
	for start := 0; start < len(ids); start += settleChunk {
		chunk := ids[start:min(start+settleChunk, len(ids))]
		in := make(bson.A, len(chunk))
		for i, id := range chunk {
			in[i] = id
		}
		if s.cfg.KeepDelivered {
			res, err := s.coll.UpdateMany(ctx, leasedBy(token, in), bson.D{
				{Key: "$set", Value: bson.D{
					{Key: fStatus, Value: string(outbox.StatusDelivered)},
					{Key: fDeliveredAt, Value: now},
				}},
				{Key: "$unset", Value: leaseFields},
			})
			if err != nil {
				return settled, s.wrap("ack", err)
			}
			settled += int(res.ModifiedCount)
			continue
		}
		res, err := s.coll.DeleteMany(ctx, leasedBy(token, in))
		if err != nil {
			return settled, s.wrap("ack", err)
		}
		settled += int(res.DeletedCount)
	}
	return settled, nil
}

// Nack records failed publishes and releases of messages leased by the claim with token and
// returns how many it settled. Retry times are the server's clock plus the delay.
func (s *Store) Nack(ctx context.Context, token string, failures []outbox.Failure) (int, error) {
	if err := s.checkOpen("nack"); err != nil {
		return 0, err
	}
	if err := backend.CheckToken(token); err != nil {
		return 0, fmt.Errorf("mongo: nack: %w", err)
	}
	if len(failures) == 0 {
		return 0, nil
	}
	now := s.now(ctx)
	settled := 0
	for start := 0; start < len(failures); start += settleChunk {
		chunk := failures[start:min(start+settleChunk, len(failures))]
		models := make([]mongo.WriteModel, len(chunk))
		for i, f := range chunk {
			var update bson.D
			switch {
			case f.Dead:
				update = bson.D{
					{Key: "$inc", Value: bson.D{{Key: fAttempts, Value: 1}}},
					{Key: "$set", Value: bson.D{
						{Key: fLastError, Value: backend.StorableText(f.Error)},
						{Key: fStatus, Value: string(outbox.StatusDead)},
						{Key: fDeadAt, Value: now},
					}},
				}
			case f.Release:
				update = bson.D{{Key: "$set", Value: bson.D{{Key: fAvailableAt, Value: now.Add(max(f.Delay, 0))}}}}
			default:
				update = bson.D{
					{Key: "$inc", Value: bson.D{{Key: fAttempts, Value: 1}}},
					{Key: "$set", Value: bson.D{
						{Key: fLastError, Value: backend.StorableText(f.Error)},
						{Key: fAvailableAt, Value: now.Add(max(f.Delay, 0))},
					}},
				}
			}
			update = append(update, bson.E{Key: "$unset", Value: leaseFields})
			models[i] = mongo.NewUpdateOneModel().SetFilter(leasedBy(token, bson.A{f.ID})).SetUpdate(update)
		}
		res, err := s.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
		if res != nil {
			settled += int(res.ModifiedCount)
		}
		if err != nil {
			return settled, s.wrap("nack", err)
		}
	}
	return settled, nil
}
