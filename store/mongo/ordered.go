package mongo

import (
	"cmp"
	"context"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox"
)

const (
	// orderedRounds bounds how many windows of due messages one ordered claim looks through
	// when the first ones belong to blocked keys.
	orderedRounds = 4
	// windowPerLimit sizes a window: keys often come in runs (a burst of one customer's
	// events), and a window only a little larger than the limit would then hold two or three
	// keys. Candidates are projected to a few small fields, so reading more costs little.
	windowPerLimit = 8
	// minWindow and maxWindow bound one window.
	minWindow = 64
	maxWindow = 2000
)

// orderedCandidates returns up to limit claimable messages for an ordered claim: messages
// without a Key, and for each Key its run: its head (the undelivered message with the lowest
// seq), when that head is due, and the messages after it while they are due (runs). A Key whose head is leased, waiting for a retry or dead yields
// nothing, and its other messages are skipped: the next window looks past them (key $nin), so a
// blocked Key with a long backlog does not starve the Keys behind it. That look past costs the
// server a scan of the blocked keys' due messages, at most orderedRounds windows per claim.
func (s *Store) orderedCandidates(ctx context.Context, now time.Time, limit int) ([]candidate, error) {
	window := min(max(windowPerLimit*limit, minWindow), maxWindow)
	var picked []candidate
	decided := map[string]bool{} // keys whose head this call already judged
	for round := 0; round < orderedRounds && len(picked) < limit; round++ {
		filter := dueFilter(now)
		if len(decided) > 0 {
			keys := make(bson.A, 0, len(decided))
			for k := range decided {
				keys = append(keys, k)
			}
			filter = append(filter, bson.E{Key: fKey, Value: bson.D{{Key: "$nin", Value: keys}}})
		}
		cands, err := s.findCandidates(ctx, filter, window)
		if err != nil {
			return nil, err
		}
		// The lowest-seq due message of each key in the window; it is the key's head unless
		// an undelivered message with a lower seq exists.
		lowest := map[string]candidate{}
		var order []string // keys in the order they first appear: oldest due first
		for _, c := range cands {
			if c.key == "" {
				if len(picked) < limit {
					picked = append(picked, c)
				}
				continue
			}
			if l, ok := lowest[c.key]; !ok || c.seq < l.seq {
				if !ok {
					order = append(order, c.key)
				}
				lowest[c.key] = c
			}
		}
		heads, err := s.earlierUndelivered(ctx, lowest)
		if err != nil {
			return nil, err
		}
		anyBlocked := false
		for _, k := range order {
			decided[k] = true
			head, earlier := heads[k]
			if !earlier {
				head = lowest[k]
			}
			if !head.due(now) {
				anyBlocked = true
				continue
			}
			if len(picked) < limit {
				picked = append(picked, head)
			}
		}
		// Look past this window only when it was full and a blocked key may hide others. When
		// every key in it flowed, the messages past it are simply younger: they wait their
		// turn, and the claim does not scan a backlog that belongs to keys already served.
		if len(cands) < window || !anyBlocked {
			break
		}
	}
	picked, err := s.runs(ctx, now, picked, limit)
	if err != nil {
		return nil, err
	}
	// Oldest due first, as unordered claims return them.
	slices.SortStableFunc(picked, func(a, b candidate) int {
		if c := cmp.Compare(a.availableAt, b.availableAt); c != 0 {
			return c
		}
		ia, _ := a.id.StringValueOK()
		ib, _ := b.id.StringValueOK()
		return cmp.Compare(ia, ib)
	})
	return picked, nil
}

// earlierUndelivered returns, for each key of lowest, the undelivered message with the lowest
// seq below lowest[key].seq, if there is one: that message, not lowest[key], is the key's head.
func (s *Store) earlierUndelivered(ctx context.Context, lowest map[string]candidate) (map[string]candidate, error) {
	heads := map[string]candidate{}
	if len(lowest) == 0 {
		return heads, nil
	}
	branches := make(bson.A, 0, len(lowest))
	for k, c := range lowest {
		branches = append(branches, bson.D{{Key: fKey, Value: k}, {Key: fSeq, Value: bson.D{{Key: "$lt", Value: c.seq}}}})
	}
	filter := bson.D{
		{Key: fStatus, Value: bson.D{{Key: "$in", Value: bson.A{string(outbox.StatusPending), string(outbox.StatusDead)}}}},
		{Key: "$or", Value: branches},
	}
	cur, err := s.coll.Find(ctx, filter, options.Find().SetProjection(candidateProjection))
	if err != nil {
		return nil, s.wrap("claim: find key heads", err)
	}
	earlier, err := s.readCandidates(ctx, cur)
	if err != nil {
		return nil, err
	}
	for _, c := range earlier {
		if h, ok := heads[c.key]; !ok || c.seq < h.seq {
			heads[c.key] = c
		}
	}
	return heads, nil
}

// runs extends each keyed head in picked with the messages of its key after it, in seq order,
// while they are due, within limit messages in all (one query for every key).
func (s *Store) runs(ctx context.Context, now time.Time, picked []candidate, limit int) ([]candidate, error) {
	heads := map[string]candidate{}
	var branches bson.A
	for _, c := range picked {
		if c.key != "" {
			heads[c.key] = c
			branches = append(branches, bson.D{{Key: fKey, Value: c.key}, {Key: fSeq, Value: bson.D{{Key: "$gt", Value: c.seq}}}})
		}
	}
	if len(branches) == 0 || len(picked) >= limit {
		return picked, nil
	}
	filter := bson.D{
		{Key: fStatus, Value: bson.D{{Key: "$in", Value: bson.A{string(outbox.StatusPending), string(outbox.StatusDead)}}}},
		{Key: "$or", Value: branches},
	}
	cur, err := s.coll.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: fSeq, Value: 1}}).
		SetLimit(int64(limit)).
		SetProjection(candidateProjection))
	if err != nil {
		return nil, s.wrap("claim: find runs", err)
	}
	rest, err := s.readCandidates(ctx, cur)
	if err != nil {
		return nil, err
	}
	ended := map[string]bool{} // a key whose run met a message that is not due
	for _, c := range rest {
		if len(picked) >= limit {
			break
		}
		if ended[c.key] || !c.due(now) {
			ended[c.key] = true
			continue
		}
		picked = append(picked, c)
	}
	return picked, nil
}

// fence guards an ordered claim against a racing one: for each key it leased (with the highest
// seq it leased), it reads the key's undelivered messages up to that seq in order, and returns
// the IDs it leased that come after a message it did not lease. Another claim holds that
// message, or it is not due: the IDs after it must be handed back, or the key's order breaks.
// The check reads undelivered state, not leases, so it holds whichever claim's update the
// server applied first.
func (s *Store) fence(ctx context.Context, token string, keys map[string]int64) (map[string]bool, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	branches := make(bson.A, 0, len(keys))
	for k, seq := range keys {
		branches = append(branches, bson.D{{Key: fKey, Value: k}, {Key: fSeq, Value: bson.D{{Key: "$lte", Value: seq}}}})
	}
	filter := bson.D{
		{Key: fStatus, Value: bson.D{{Key: "$in", Value: bson.A{string(outbox.StatusPending), string(outbox.StatusDead)}}}},
		{Key: "$or", Value: branches},
	}
	cur, err := s.coll.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: fSeq, Value: 1}}).
		SetProjection(bson.D{{Key: fID, Value: 1}, {Key: fKey, Value: 1}, {Key: fSeq, Value: 1}, {Key: fClaim, Value: 1}}))
	if err != nil {
		return nil, s.wrap("claim: fence", err)
	}
	// What went wrong reading is cur.Err's; the cursor is spent once Next returns false.
	defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
	broken := map[string]bool{} // keys with a message this claim does not hold
	out := map[string]bool{}
	for cur.Next(ctx) {
		key, _ := cur.Current.Lookup(fKey).StringValueOK()
		id, _ := cur.Current.Lookup(fID).StringValueOK()
		claim, _ := cur.Current.Lookup(fClaim).StringValueOK()
		switch {
		case claim != token:
			broken[key] = true
		case broken[key]:
			out[id] = true
		}
	}
	if err := cur.Err(); err != nil {
		return nil, s.wrap("claim: fence", err)
	}
	return out, nil
}
