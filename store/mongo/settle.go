package mongo

import (
	"context"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox/core"
)

const (
	// settleChunk bounds the IDs of one statement.
	settleChunk = 1000
	// maxLastError bounds the stored error text.
	maxLastError = 4096
)

// leasedBy matches the given pending messages still leased to owner: an ack or nack from a
// relay whose lease was taken over by another is ignored.
func leasedBy(owner string, ids bson.A) bson.D {
	return bson.D{
		{Key: fID, Value: bson.D{{Key: "$in", Value: ids}}},
		{Key: fStatus, Value: string(core.StatusPending)},
		{Key: fLeaseOwner, Value: owner},
	}
}

// Ack deletes the messages leased to owner, or with KeepDelivered marks them delivered.
func (s *Store) Ack(ctx context.Context, owner string, ids []string) error {
	if err := s.check("ack"); err != nil {
		return err
	}
	for start := 0; start < len(ids); start += settleChunk {
		chunk := ids[start:min(start+settleChunk, len(ids))]
		in := make(bson.A, len(chunk))
		for i, id := range chunk {
			in[i] = id
		}
		var err error
		if s.cfg.KeepDelivered {
			_, err = s.coll.UpdateMany(ctx, leasedBy(owner, in), bson.D{
				{Key: "$set", Value: bson.D{
					{Key: fStatus, Value: string(core.StatusDelivered)},
					{Key: fDeliveredAt, Value: time.Now().UTC()},
				}},
				{Key: "$unset", Value: leaseFields},
			})
		} else {
			_, err = s.coll.DeleteMany(ctx, leasedBy(owner, in))
		}
		if err != nil {
			return s.wrap("ack", err)
		}
	}
	return nil
}

// Nack records failed publishes of messages leased to owner: attempts+1, the error, and the
// retry time or the dead state; the lease is released.
func (s *Store) Nack(ctx context.Context, owner string, failures []core.Failure) error {
	if err := s.check("nack"); err != nil {
		return err
	}
	now := time.Now().UTC()
	for start := 0; start < len(failures); start += settleChunk {
		chunk := failures[start:min(start+settleChunk, len(failures))]
		models := make([]mongo.WriteModel, len(chunk))
		for i, f := range chunk {
			set := bson.D{{Key: fLastError, Value: errorText(f.Error)}}
			if f.Dead {
				set = append(set, bson.E{Key: fStatus, Value: string(core.StatusDead)}, bson.E{Key: fDeadAt, Value: now})
			} else {
				retry := f.RetryAt
				if retry.IsZero() {
					retry = now
				}
				set = append(set, bson.E{Key: fAvailableAt, Value: retry.UTC()})
			}
			models[i] = mongo.NewUpdateOneModel().
				SetFilter(leasedBy(owner, bson.A{f.ID})).
				SetUpdate(bson.D{
					{Key: "$inc", Value: bson.D{{Key: fAttempts, Value: 1}}},
					{Key: "$set", Value: set},
					{Key: "$unset", Value: leaseFields},
				})
		}
		if _, err := s.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
			return s.wrap("nack", err)
		}
	}
	return nil
}

// errorText makes an error text storable: valid UTF-8 (BSON strings must be) and bounded.
func errorText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxLastError {
		return s
	}
	// Cutting inside a rune leaves a broken tail, which ToValidUTF8 drops.
	return strings.ToValidUTF8(s[:maxLastError], "")
}
