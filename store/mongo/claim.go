package mongo

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
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
	return c.status == string(outbox.StatusPending) && c.availableAt <= now.UnixMilli()
}

var candidateProjection = bson.D{{Key: fID, Value: 1}, {Key: fKey, Value: 1}, {Key: fSeq, Value: 1}, {Key: fStatus, Value: 1}, {Key: fAvailableAt, Value: 1}}

// dueFilter matches messages that may be claimed at now. A leased message has available_at at
// the end of its lease, so it is due again exactly when the lease expires.
func dueFilter(now time.Time) bson.D {
	return bson.D{
		{Key: fStatus, Value: string(outbox.StatusPending)},
		{Key: fAvailableAt, Value: bson.D{{Key: "$lte", Value: now}}},
	}
}

// Claim leases up to req.Limit due messages to req.Owner, oldest due first. It reads candidates,
// then leases them with one UpdateMany whose filter repeats the due condition: the server
// applies it to each document atomically, so when relays race for a message exactly one lease
// matches, and each Claim call marks what it won with its own token. A claimed document that
// cannot be decoded is dead-lettered with the reason and not returned.
func (s *Store) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	if err := s.checkOpen("claim"); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("mongo: claim: %w", err)
	}
	now := s.now(ctx)
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
	token := req.Token
	until := now.Add(req.Lease)
	filter := append(dueFilter(now), bson.E{Key: fID, Value: bson.D{{Key: "$in", Value: ids}}})
	res, err := s.coll.UpdateMany(ctx, filter, bson.D{{Key: "$set", Value: bson.D{
		{Key: fLeaseOwner, Value: token},
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
	type claimed struct {
		raw bson.Raw
		seq int64
		msg *storedMessage
		err error
	}
	got := make([]claimed, 0, len(raws))
	for _, raw := range raws {
		c := claimed{raw: raw}
		c.seq, _ = raw.Lookup(fSeq).AsInt64OK()
		c.msg, c.err = decodeDocument(raw)
		if c.err != nil {
			c.msg = &storedMessage{}
			c.msg.ID, _ = raw.Lookup(fID).StringValueOK()
			c.msg.Key, _ = raw.Lookup(fKey).StringValueOK()
		}
		got = append(got, c)
	}
	// Oldest due first, as the candidates were; in an ordered claim each key's messages then in
	// seq order among the places they hold (seq counts per key), as the sieve and the fence
	// need them.
	rank := make(map[string]int, len(cands))
	for i, c := range cands {
		id, _ := c.id.StringValueOK()
		rank[id] = i
	}
	slices.SortFunc(got, func(a, b claimed) int { return cmp.Compare(rank[a.msg.ID], rank[b.msg.ID]) })
	if req.Ordered {
		places := map[string][]int{}
		for i, c := range got {
			places[c.msg.Key] = append(places[c.msg.Key], i)
		}
		for key, at := range places {
			if key == "" {
				continue
			}
			run := make([]claimed, len(at))
			for j, i := range at {
				run[j] = got[i]
			}
			slices.SortFunc(run, func(a, b claimed) int { return cmp.Compare(a.seq, b.seq) })
			for j, i := range at {
				got[i] = run[j]
			}
		}
	}
	var fenced map[string]bool
	if req.Ordered {
		keys := map[string]int64{} // key -> highest seq claimed
		for _, c := range got {
			if c.msg.Key != "" {
				keys[c.msg.Key] = max(keys[c.msg.Key], c.seq)
			}
		}
		if fenced, err = s.fence(ctx, token, keys); err != nil {
			return nil, err
		}
	}
	sieve := backend.ClaimSieve{Backend: "mongo", Ordered: req.Ordered}
	msgs := make([]*outbox.Message, 0, len(got))
	var release []outbox.Failure
	for _, c := range got {
		if fenced[c.msg.ID] {
			release = append(release, outbox.Failure{ID: c.msg.ID, Release: true})
			continue
		}
		f, ok := sieve.Sort(&c.msg.Message, c.err)
		switch {
		case ok:
			msgs = append(msgs, &c.msg.Message)
		case f.Dead:
			// Never returned, so never published: a consumer would choke on it.
			if derr := s.deadLetterCorrupt(ctx, c.raw.Lookup(fID), token, c.err, now); derr != nil {
				return nil, derr
			}
		default:
			release = append(release, f)
		}
	}
	if len(release) > 0 {
		if _, err := s.Nack(ctx, token, release); err != nil {
			return nil, fmt.Errorf("mongo: claim: hand back messages behind a held or corrupt one: %w", err)
		}
	}
	return msgs, nil
}

// deadLetterCorrupt moves a claimed document that cannot be decoded to dead, with the reason.
func (s *Store) deadLetterCorrupt(ctx context.Context, id bson.RawValue, token string, reason error, now time.Time) error {
	_, err := s.coll.UpdateOne(ctx,
		bson.D{{Key: fID, Value: id}, {Key: fClaim, Value: token}},
		bson.D{
			{Key: "$set", Value: bson.D{
				{Key: fStatus, Value: string(outbox.StatusDead)},
				{Key: fDeadAt, Value: now},
				{Key: fLastError, Value: backend.StorableText("mongo: corrupt message: " + reason.Error())},
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
	// What went wrong reading is cur.Err's; the cursor is spent once Next returns false.
	defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
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
