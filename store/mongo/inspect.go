package mongo

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox"
)

// defaultListLimit is ListDead's limit when the filter sets none.
const defaultListLimit = 100

// Counts reports how many messages are pending (leased ones included), delivered (kept with
// KeepDelivered) and dead, and when the oldest pending one was created.
func (s *Store) Counts(ctx context.Context) (outbox.Counts, error) {
	if err := s.checkOpen("counts"); err != nil {
		return outbox.Counts{}, err
	}
	var c outbox.Counts
	for _, st := range []struct {
		status outbox.Status
		n      *int64
	}{{outbox.StatusPending, &c.Pending}, {outbox.StatusDelivered, &c.Delivered}, {outbox.StatusDead, &c.Dead}} {
		n, err := s.coll.CountDocuments(ctx, bson.D{{Key: fStatus, Value: string(st.status)}})
		if err != nil {
			return outbox.Counts{}, s.wrap("counts", err)
		}
		*st.n = n
	}
	if c.Pending > 0 {
		var oldest struct {
			CreatedAt time.Time `bson:"created_at"`
		}
		err := s.coll.FindOne(ctx, bson.D{{Key: fStatus, Value: string(outbox.StatusPending)}},
			options.FindOne().SetSort(bson.D{{Key: fCreatedAt, Value: 1}}).SetProjection(bson.D{{Key: fCreatedAt, Value: 1}}),
		).Decode(&oldest)
		if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			return outbox.Counts{}, s.wrap("counts: oldest pending", err)
		}
		c.OldestPending = oldest.CreatedAt.UTC()
	}
	return c, nil
}

// deadFilter selects the dead messages f names.
func deadFilter(f outbox.DeadFilter) bson.D {
	filter := bson.D{{Key: fStatus, Value: string(outbox.StatusDead)}}
	if len(f.IDs) > 0 {
		ids := make(bson.A, len(f.IDs))
		for i, id := range f.IDs {
			ids[i] = id
		}
		filter = append(filter, bson.E{Key: fID, Value: bson.D{{Key: "$in", Value: ids}}})
	}
	if f.Type != "" {
		filter = append(filter, bson.E{Key: fType, Value: f.Type})
	}
	if f.Key != "" {
		filter = append(filter, bson.E{Key: fKey, Value: f.Key})
	}
	return filter
}

// ListDead returns dead messages, oldest first, at most f.Limit (default 100). A dead document
// too damaged to decode is listed with what can be read of it and the reason it died.
func (s *Store) ListDead(ctx context.Context, f outbox.DeadFilter) ([]outbox.DeadLetter, error) {
	if err := s.checkOpen("list dead"); err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	cur, err := s.coll.Find(ctx, deadFilter(f), options.Find().
		SetSort(bson.D{{Key: fCreatedAt, Value: 1}, {Key: fID, Value: 1}}).
		SetLimit(int64(limit)))
	if err != nil {
		return nil, s.wrap("list dead", err)
	}
	var raws []bson.Raw
	if err := cur.All(ctx, &raws); err != nil {
		return nil, s.wrap("list dead", err)
	}
	out := make([]outbox.DeadLetter, 0, len(raws))
	for _, raw := range raws {
		sm, err := decodeDocument(raw)
		if err != nil {
			out = append(out, damagedDeadLetter(raw, err))
			continue
		}
		out = append(out, outbox.DeadLetter{Message: sm.Message, LastError: sm.LastError, DiedAt: sm.DeadAt})
	}
	return out, nil
}

// damagedDeadLetter reads what it can of a dead document that does not decode.
func damagedDeadLetter(raw bson.Raw, cause error) outbox.DeadLetter {
	var dl outbox.DeadLetter
	if id, ok := raw.Lookup(fID).StringValueOK(); ok {
		dl.ID = id
	} else {
		dl.ID = raw.Lookup(fID).String()
	}
	dl.Type, _ = raw.Lookup(fType).StringValueOK()
	dl.Key, _ = raw.Lookup(fKey).StringValueOK()
	if ms, ok := raw.Lookup(fCreatedAt).DateTimeOK(); ok {
		dl.CreatedAt = time.UnixMilli(ms).UTC()
	}
	if ms, ok := raw.Lookup(fDeadAt).DateTimeOK(); ok {
		dl.DiedAt = time.UnixMilli(ms).UTC()
	}
	dl.LastError, _ = raw.Lookup(fLastError).StringValueOK()
	if dl.LastError == "" {
		dl.LastError = "mongo: " + cause.Error()
	}
	return dl
}

// Requeue makes the dead messages f names pending again, due now with attempts reset, and
// returns how many. Their last error is kept for reference until they next fail or succeed.
func (s *Store) Requeue(ctx context.Context, f outbox.DeadFilter) (int, error) {
	if err := s.checkOpen("requeue"); err != nil {
		return 0, err
	}
	res, err := s.coll.UpdateMany(ctx, deadFilter(f), bson.D{
		{Key: "$set", Value: bson.D{
			{Key: fStatus, Value: string(outbox.StatusPending)},
			{Key: fAttempts, Value: 0},
			{Key: fAvailableAt, Value: s.now(ctx)},
		}},
		{Key: "$unset", Value: append(bson.D{{Key: fDeadAt, Value: ""}}, leaseFields...)},
	})
	if err != nil {
		return 0, s.wrap("requeue", err)
	}
	return int(res.ModifiedCount), nil
}

// Purge deletes the dead messages f names and returns how many.
func (s *Store) Purge(ctx context.Context, f outbox.DeadFilter) (int, error) {
	if err := s.checkOpen("purge"); err != nil {
		return 0, err
	}
	res, err := s.coll.DeleteMany(ctx, deadFilter(f))
	if err != nil {
		return 0, s.wrap("purge", err)
	}
	return int(res.DeletedCount), nil
}
