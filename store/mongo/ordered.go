package mongo

import (
	"cmp"
	"context"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox/core"
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
// without a Key, and for each Key at most its head (the undelivered message with the lowest
// seq), when that head is due. A Key whose head is leased, waiting for a retry or dead yields
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
		{Key: fStatus, Value: bson.D{{Key: "$in", Value: bson.A{string(core.StatusPending), string(core.StatusDead)}}}},
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
