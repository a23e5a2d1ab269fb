package mongo

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox/core"
)

// candidate is a message that looks claimable, read without decoding the whole document so a
// corrupt one is still found (and dead-lettered once claimed).
type candidate struct {
	id          bson.RawValue
	key         string
	seq         int64
	status      string
	availableAt int64 // Unix ms; 0 when missing
}

func readCandidate(raw bson.Raw) candidate {
	c := candidate{id: raw.Lookup(fID)}
	c.key, _ = raw.Lookup(fKey).StringValueOK()
	c.seq, _ = raw.Lookup(fSeq).AsInt64OK()
	c.status, _ = raw.Lookup(fStatus).StringValueOK()
	c.availableAt, _ = raw.Lookup(fAvailableAt).DateTimeOK()
	return c
}

func (c candidate) due(now time.Time) bool {
	return c.status == string(core.StatusPending) && c.availableAt <= now.UnixMilli()
}

var candidateProjection = bson.D{{Key: fID, Value: 1}, {Key: fKey, Value: 1}, {Key: fSeq, Value: 1}, {Key: fStatus, Value: 1}, {Key: fAvailableAt, Value: 1}}

// dueFilter matches messages that may be claimed at now. A leased message has available_at at
// the end of its lease, so it is due again exactly when the lease expires.
func dueFilter(now time.Time) bson.D {
	return bson.D{
		{Key: fStatus, Value: string(core.StatusPending)},
		{Key: fAvailableAt, Value: bson.D{{Key: "$lte", Value: now}}},
	}
}

// Claim leases up to req.Limit due messages to req.Owner, oldest due first. It reads candidates,
// then leases them with one UpdateMany whose filter repeats the due condition: the server
// applies it to each document atomically, so when relays race for a message exactly one lease
// matches, and each Claim call marks what it won with its own token. A claimed document that
// cannot be decoded is dead-lettered with the reason and not returned.
func (s *Store) Claim(ctx context.Context, req core.ClaimRequest) ([]*core.Message, error) {
	if err := s.check("claim"); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	var cands []candidate
	var err error
	if req.Ordered {
		cands, err = s.orderedCandidates(ctx, now, req.Limit)
	} else {
		cands, err = s.findCandidates(ctx, dueFilter(now), req.Limit)
	}
	if err != nil || len(cands) == 0 {
		return nil, err
	}

	ids := make(bson.A, len(cands))
	for i, c := range cands {
		ids[i] = c.id
	}
	token := rand.Text()
	until := now.Add(req.Lease)
	filter := append(dueFilter(now), bson.E{Key: fID, Value: bson.D{{Key: "$in", Value: ids}}})
	res, err := s.coll.UpdateMany(ctx, filter, bson.D{{Key: "$set", Value: bson.D{
		{Key: fLeaseOwner, Value: req.Owner},
		{Key: fLeaseUntil, Value: until},
		{Key: fAvailableAt, Value: until},
		{Key: fClaim, Value: token},
	}}})
	if err != nil {
		return nil, s.wrap("claim", err)
	}
	if res.ModifiedCount == 0 {
		return nil, nil
	}

	cur, err := s.coll.Find(ctx, bson.D{{Key: fID, Value: bson.D{{Key: "$in", Value: ids}}}, {Key: fClaim, Value: token}})
	if err != nil {
		return nil, s.wrap("claim: read claimed", err)
	}
	var raws []bson.Raw
	if err := cur.All(ctx, &raws); err != nil {
		return nil, s.wrap("claim: read claimed", err)
	}
	byID := make(map[string]*core.Message, len(raws))
	for _, raw := range raws {
		sm, err := decodeDocument(raw)
		if err != nil {
			// Never returned, so never published: a consumer would choke on it.
			if derr := s.deadLetterCorrupt(ctx, raw.Lookup(fID), token, err); derr != nil {
				return nil, derr
			}
			continue
		}
		byID[sm.ID] = &sm.Message
	}
	// Candidates are oldest first; the claimed documents come back in any order.
	msgs := make([]*core.Message, 0, len(byID))
	for _, c := range cands {
		if id, ok := c.id.StringValueOK(); ok {
			if m := byID[id]; m != nil {
				msgs = append(msgs, m)
				delete(byID, id)
			}
		}
	}
	return msgs, nil
}

// deadLetterCorrupt moves a claimed document that cannot be decoded to dead, with the reason.
func (s *Store) deadLetterCorrupt(ctx context.Context, id bson.RawValue, token string, reason error) error {
	_, err := s.coll.UpdateOne(ctx,
		bson.D{{Key: fID, Value: id}, {Key: fClaim, Value: token}},
		bson.D{
			{Key: "$set", Value: bson.D{
				{Key: fStatus, Value: string(core.StatusDead)},
				{Key: fDeadAt, Value: time.Now().UTC()},
				{Key: fLastError, Value: "mongo: " + reason.Error()},
			}},
			{Key: "$unset", Value: leaseFields},
		})
	return s.wrap(fmt.Sprintf("claim: dead-letter corrupt document %s", id), err)
}

// leaseFields is the $unset that releases a lease.
var leaseFields = bson.D{{Key: fLeaseOwner, Value: ""}, {Key: fLeaseUntil, Value: ""}, {Key: fClaim, Value: ""}}

func (s *Store) findCandidates(ctx context.Context, filter bson.D, limit int) ([]candidate, error) {
	cur, err := s.coll.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: fAvailableAt, Value: 1}, {Key: fID, Value: 1}}).
		SetLimit(int64(limit)).
		SetProjection(candidateProjection))
	if err != nil {
		return nil, s.wrap("claim: find due", err)
	}
	return s.readCandidates(ctx, cur)
}

func (s *Store) readCandidates(ctx context.Context, cur *mongo.Cursor) ([]candidate, error) {
	defer cur.Close(context.WithoutCancel(ctx))
	var out []candidate
	for cur.Next(ctx) {
		// Current is only valid until the next call to Next.
		out = append(out, readCandidate(bson.Raw(append([]byte(nil), cur.Current...))))
	}
	if err := cur.Err(); err != nil {
		return nil, s.wrap("claim: read candidates", err)
	}
	return out, nil
}
