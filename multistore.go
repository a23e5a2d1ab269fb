package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// errDeferred is the reason given for a message a MultiStore hands back unpublished because its
// ID or key was already taken in the same claim by another outbox.
var errDeferred = errors.New("not published: deferred, its ID or key was in the same claim from another outbox")

// MultiStore is a Store over several named outboxes (tables, schemas or databases, each with a
// Store of its own), so that one Relay with one Transport serves them all.
//
// A claim goes round the outboxes, from a different one each time (those that had nothing last
// time first), and gives each a fair share of the claim's limit (what one leaves unused is
// shared by those after it; what is still left after a round goes to the outboxes that filled
// their share), so a large backlog in one outbox never holds back another's messages for longer
// than a claim or two. Every outbox is asked in every claim that is not full before it: an idle
// relay over N outboxes makes N store calls per poll.
//
// The outboxes stay apart: a claim never holds two messages with the same ID, nor, in ordered
// mode, the same Key from two outboxes (keys are per outbox: two outboxes' key "k" are two
// keys). A message that would clash is handed back to its outbox unpublished, without an
// attempt charged, and comes in a later claim. Ack and Nack settle each message in the outbox
// that it was claimed from, even when another outbox holds the same ID.
//
// MultiStore is a Notifier (it wakes the relay on any outbox's notification; outboxes whose
// store cannot notify are polled), a SchemaChecker (it checks every outbox and names the
// failing one) and Retention (it deletes delivered messages in every outbox). It is not an
// Inspector: a dead letter would not say which outbox it is in; inspect each outbox's store
// (see Outbox). Stats reports counters per outbox.
type MultiStore struct {
	names  []string // sorted
	stores []Store
	counts []multiCounters

	mu        sync.Mutex
	next      int                    // the outbox the next claim starts its turns with
	lead      int                    // the outbox the next claim asks first (handed back last time); -1: none
	claims    map[string]*multiClaim // by claim token: which outbox each claimed message is in
	nextSweep time.Time
}

// multiClaim is one claim's routing: the outbox of each message not yet settled.
type multiClaim struct {
	expires time.Time
	// A claim from one outbox (the common case, and the cheap one) is routed whole to single,
	// and forgotten when its store has settled left messages; a claim from several outboxes
	// keeps the outbox of each message not yet settled in of.
	single, left int
	of           map[string]int // message ID -> outbox index; nil for a claim from one outbox
	// carry holds what a partly failed Ack [0] or Nack [1] settled in the outboxes that
	// answered, for the retry of the same call to report.
	carry [2]int
}

type multiCounters struct {
	claimed, published, failed, dead, released, deferred, claimErrors atomic.Int64
	// busy: the outbox's last sub-claim found messages (see Claim's first round).
	busy atomic.Bool
}

// OutboxStats is one outbox's counters in a MultiStore, since the MultiStore was made.
type OutboxStats struct { //nolint:revive // outbox.Stats is the relay's counters; these are one outbox's
	Name      string
	Claimed   int64 // messages claimed and handed to the relay
	Published int64 // messages acknowledged (as counted by the outbox's store)
	Failed    int64 // failed publishes recorded with an attempt charged
	Dead      int64 // messages moved to dead
	Released  int64 // messages the relay handed back without an attempt
	// Deferred counts messages claimed and handed straight back because their ID or, in
	// ordered mode, their key was in the same claim from another outbox.
	Deferred int64
	// ClaimErrors counts failed claims of this outbox; the other outboxes are served meanwhile.
	ClaimErrors int64
}

// NewMultiStore returns a Store over the given outboxes, by name. Names must be non-empty; they
// only label errors and Stats, so their number bounds the cardinality of per-outbox metrics.
func NewMultiStore(outboxes map[string]Store) (*MultiStore, error) {
	if len(outboxes) == 0 {
		return nil, &ConfigError{Component: "multistore", Field: "outboxes", Problem: "is empty"}
	}
	s := &MultiStore{claims: map[string]*multiClaim{}, lead: -1}
	for name, st := range outboxes {
		if name == "" {
			return nil, &ConfigError{Component: "multistore", Field: "outboxes", Problem: "has an empty name"}
		}
		if st == nil {
			return nil, &ConfigError{Component: "multistore", Field: "outboxes", Problem: fmt.Sprintf("has a nil store for %q", name)}
		}
		s.names = append(s.names, name)
	}
	slices.Sort(s.names)
	for _, name := range s.names {
		s.stores = append(s.stores, outboxes[name])
	}
	s.counts = make([]multiCounters, len(s.names))
	return s, nil
}

// Outbox returns the store of the named outbox, to inspect or repair it.
func (s *MultiStore) Outbox(name string) (Store, bool) {
	i, ok := slices.BinarySearch(s.names, name)
	if !ok {
		return nil, false
	}
	return s.stores[i], true
}

// Stats returns the counters of every outbox, by name.
func (s *MultiStore) Stats() []OutboxStats {
	out := make([]OutboxStats, len(s.names))
	for i, name := range s.names {
		c := &s.counts[i]
		out[i] = OutboxStats{
			Name: name, Claimed: c.claimed.Load(), Published: c.published.Load(), Failed: c.failed.Load(),
			Dead: c.dead.Load(), Released: c.released.Load(), Deferred: c.deferred.Load(), ClaimErrors: c.claimErrors.Load(),
		}
	}
	return out
}

// multiBatch is a claim being put together from several outboxes.
type multiBatch struct {
	req   ClaimRequest
	out   []*Message
	first int // the outbox of every message in out, until a second one adds some (-1: none yet)
	// Once a second outbox adds messages: the outbox of each message by ID and, in ordered
	// mode, by key (the outbox whose messages of that key the claim holds); nil until then.
	of, keyOf map[string]int
	errs      []error
}

// mix makes b ready for messages of a second outbox: it records the outbox of those in it.
func (b *multiBatch) mix() {
	b.of = make(map[string]int, b.req.Limit)
	b.keyOf = map[string]int{}
	for _, m := range b.out {
		b.of[m.ID] = b.first
		if b.req.Ordered && m.Key != "" {
			b.keyOf[m.Key] = b.first
		}
	}
}

// Claim implements Store: round robin over the outboxes with a fair share each (see
// MultiStore). A failing outbox does not fail the claim while others answer; the claim fails
// only when it found nothing and some outbox failed.
func (s *MultiStore) Claim(ctx context.Context, req ClaimRequest) ([]*Message, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("multistore: claim: %w", err)
	}
	n := len(s.stores)
	s.mu.Lock()
	start, lead := s.next, s.lead
	s.lead = -1
	s.mu.Unlock()

	b := &multiBatch{req: req, first: -1}
	// First round: the outbox that handed messages back last time if any, then those found idle
	// last time, then those found busy, each kind in turn from start, each with a fair share of
	// what is left among those not yet visited: idle outboxes are asked before busy ones so that the busy ones
	// share all that the idle ones leave, and a backlog beside idle outboxes is claimed in one
	// store call, not in shares. A sub-claim that had to hand messages back (their key or ID
	// was taken) ends the claim, and the next claim asks that outbox first, so that handing
	// back costs one store call per claim at most and the outbox is served first next time.
	busy := make([]bool, n)
	for i := range n {
		busy[i] = s.counts[i].busy.Load()
	}
	order := make([]int, 0, n)
	if lead >= 0 {
		order = append(order, lead)
	}
	for pass := range 2 {
		for i := range n {
			if idx := (start + i) % n; idx != lead && busy[idx] == (pass == 1) {
				order = append(order, idx)
			}
		}
	}
	var more []int // outboxes that filled their share: they may have more
	deferred := -1
	for i, idx := range order {
		if len(b.out) >= req.Limit || ctx.Err() != nil {
			break
		}
		share := max(1, (req.Limit-len(b.out))/(len(order)-i))
		full, back := s.claimFrom(ctx, b, idx, share)
		if back {
			deferred = idx
			break
		}
		if full {
			more = append(more, idx)
		}
	}
	// Next rounds: what is left goes to the outboxes that filled their share.
	for deferred < 0 && len(more) > 0 && len(b.out) < req.Limit && ctx.Err() == nil {
		var next []int
		for j, idx := range more {
			if len(b.out) >= req.Limit || ctx.Err() != nil {
				break
			}
			share := max(1, (req.Limit-len(b.out))/(len(more)-j))
			full, back := s.claimFrom(ctx, b, idx, share)
			if back {
				deferred = idx
				break
			}
			if full {
				next = append(next, idx)
			}
		}
		more = next
	}

	s.mu.Lock()
	s.next = (start + 1) % n
	if deferred >= 0 {
		s.lead = deferred // what was handed back comes first next time
	}
	now := time.Now()
	if len(b.out) > 0 {
		s.claims[req.Token] = &multiClaim{expires: now.Add(2*req.Lease + stopGrace), single: b.first, left: len(b.out), of: b.of}
	}
	if now.After(s.nextSweep) {
		// Forget claims whose settling was abandoned (their leases ran out long ago).
		for token, c := range s.claims {
			if now.After(c.expires) {
				delete(s.claims, token)
			}
		}
		s.nextSweep = now.Add(req.Lease)
	}
	s.mu.Unlock()

	if len(b.out) == 0 && len(b.errs) > 0 && ctx.Err() == nil {
		return nil, errors.Join(b.errs...)
	}
	return b.out, nil
}

// claimFrom claims up to share messages from outbox idx into b and reports whether the outbox
// filled its share (it may have more) and whether it handed messages back.
func (s *MultiStore) claimFrom(ctx context.Context, b *multiBatch, idx, share int) (full, back bool) {
	req := b.req
	req.Limit = share
	got, err := s.stores[idx].Claim(ctx, req)
	if err != nil {
		if ctx.Err() == nil {
			s.counts[idx].claimErrors.Add(1)
			b.errs = append(b.errs, fmt.Errorf("outbox %q: %w", s.names[idx], err))
		}
		return false, false
	}
	var returned []Failure
	switch {
	case len(got) == 0:
	case b.of == nil && (b.first < 0 || b.first == idx):
		// All of one outbox so far: no ID or key can clash.
		b.first = idx
		b.out = append(b.out, got...)
	default:
		if b.of == nil {
			b.mix()
		}
		returned = b.add(idx, got)
	}
	s.counts[idx].claimed.Add(int64(len(got) - len(returned)))
	s.counts[idx].busy.Store(len(got) > 0)
	if len(returned) > 0 {
		s.counts[idx].deferred.Add(int64(len(returned)))
		// Best effort: what is not handed back comes back when its lease runs out.
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), req.Lease)
		_, _ = s.stores[idx].Nack(nctx, req.Token, returned)
		cancel()
	}
	return len(got) == share, len(returned) > 0
}

// add adds the messages of outbox idx to a claim that holds another outbox's, except those
// whose ID, or in ordered mode key, the claim already holds from another outbox: it returns
// those as the failures that hand them back.
func (b *multiBatch) add(idx int, got []*Message) []Failure {
	var (
		returned     []Failure
		deferredKeys map[string]bool
	)
	for _, m := range got {
		keyed := b.req.Ordered && m.Key != ""
		owner, keyTaken := 0, false
		if keyed {
			owner, keyTaken = b.keyOf[m.Key]
		}
		_, idTaken := b.of[m.ID]
		switch {
		case keyed && deferredKeys[m.Key], idTaken, keyTaken && owner != idx:
			// Handing back a message hands back the rest of its key's run with it, so that
			// nothing of the key goes out ahead of it.
			returned = append(returned, Failure{ID: m.ID, Error: errDeferred.Error(), Release: true})
			if keyed {
				if deferredKeys == nil {
					deferredKeys = map[string]bool{}
				}
				deferredKeys[m.Key] = true
			}
		default:
			b.out = append(b.out, m)
			b.of[m.ID] = idx
			if keyed {
				b.keyOf[m.Key] = idx
			}
		}
	}
	return returned
}

// route groups ids by the outbox they were claimed from (ids the claim does not hold are left
// out) and takes the carry of an earlier, partly failed call of the same op.
func (s *MultiStore) route(token string, ids []string, op int) (map[int][]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.claims[token]
	if c == nil {
		return nil, 0
	}
	groups := map[int][]string{}
	if c.of == nil {
		groups[c.single] = ids // the store ignores an ID its claim does not hold
	}
	for _, id := range ids {
		if idx, ok := c.of[id]; ok {
			groups[idx] = append(groups[idx], id)
		}
	}
	carry := c.carry[op]
	c.carry[op] = 0
	return groups, carry
}

// settled forgets ids, of which the store settled n, and the claim once all are settled;
// carry is kept for a retry.
func (s *MultiStore) settled(token string, ids []string, n, op, carry int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.claims[token]
	if c == nil {
		return
	}
	done := false
	if c.of == nil {
		// What the store settled is no longer held by this claim's token: it cannot be
		// settled twice, so counting it down is exact.
		c.left -= n
		done = c.left <= 0
	} else {
		for _, id := range ids {
			delete(c.of, id)
		}
		done = len(c.of) == 0
	}
	c.carry[op] += carry
	if done && c.carry == [2]int{} {
		delete(s.claims, token)
	}
}

// Ack implements Store: each message is acknowledged in the outbox it was claimed from.
func (s *MultiStore) Ack(ctx context.Context, token string, ids []string) (int, error) {
	groups, total := s.route(token, ids, 0)
	var errs []error
	for _, idx := range sortedKeys(groups) {
		n, err := s.stores[idx].Ack(ctx, token, groups[idx])
		if err != nil {
			errs = append(errs, fmt.Errorf("outbox %q: ack: %w", s.names[idx], err))
			continue
		}
		total += n
		s.counts[idx].published.Add(int64(n))
		s.settled(token, groups[idx], n, 0, 0)
	}
	if len(errs) > 0 {
		s.settled(token, nil, 0, 0, total)
		return 0, errors.Join(errs...)
	}
	return total, nil
}

// Nack implements Store: each failure is recorded in the outbox its message was claimed from.
func (s *MultiStore) Nack(ctx context.Context, token string, failures []Failure) (int, error) {
	ids := make([]string, len(failures))
	byID := make(map[string]Failure, len(failures))
	for i, f := range failures {
		ids[i] = f.ID
		byID[f.ID] = f
	}
	groups, total := s.route(token, ids, 1)
	var errs []error
	for _, idx := range sortedKeys(groups) {
		fs := make([]Failure, len(groups[idx]))
		for i, id := range groups[idx] {
			fs[i] = byID[id]
		}
		n, err := s.stores[idx].Nack(ctx, token, fs)
		if err != nil {
			errs = append(errs, fmt.Errorf("outbox %q: nack: %w", s.names[idx], err))
			continue
		}
		total += n
		c := &s.counts[idx]
		for _, f := range fs {
			switch {
			case f.Dead:
				c.dead.Add(1)
			case f.Release:
				c.released.Add(1)
			default:
				c.failed.Add(1)
			}
		}
		s.settled(token, groups[idx], n, 1, 0)
	}
	if len(errs) > 0 {
		s.settled(token, nil, 0, 1, total)
		return 0, errors.Join(errs...)
	}
	return total, nil
}

func sortedKeys(m map[int][]string) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Listen implements Notifier: the channel receives a value whenever any outbox's store
// signals. Each outbox's store is listened to in the background and again, with backoff, when
// it fails; outboxes whose store is not a Notifier are found by the relay's polling. Listen
// fails only when no outbox's store is a Notifier.
func (s *MultiStore) Listen(ctx context.Context) (<-chan struct{}, error) {
	var ns []Notifier
	for _, st := range s.stores {
		if n, ok := st.(Notifier); ok {
			ns = append(ns, n)
		}
	}
	if len(ns) == 0 {
		return nil, errors.New("multistore: no outbox's store can notify")
	}
	out := make(chan struct{}, 1)
	signal := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	for _, n := range ns {
		wg.Go(func() {
			for failures := 0; ; {
				ch, err := n.Listen(ctx)
				if err == nil {
					failures = 0
					signal() // anything committed while not listening
					for range ch {
						signal()
					}
				}
				if ctx.Err() != nil {
					return
				}
				failures++
				t := time.NewTimer(listenBackoff.Delay(failures))
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out, nil
}

// CheckSchema implements SchemaChecker: it checks every outbox whose store is a SchemaChecker,
// side by side, and returns their errors, each naming its outbox (the result matches ErrSchema
// when any outbox's table is missing or wrong).
func (s *MultiStore) CheckSchema(ctx context.Context) error {
	errs := make([]error, len(s.stores))
	var wg sync.WaitGroup
	for i, st := range s.stores {
		if sc, ok := st.(SchemaChecker); ok {
			wg.Go(func() {
				if err := sc.CheckSchema(ctx); err != nil {
					errs[i] = fmt.Errorf("outbox %q: %w", s.names[i], err)
				}
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// DeleteDelivered implements Retention over the outboxes whose store is Retention: it deletes
// at most limit messages in all, outbox after outbox, and returns fewer than limit only when
// every outbox returned fewer than it was asked for.
func (s *MultiStore) DeleteDelivered(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	total := 0
	var errs []error
	for i, st := range s.stores {
		ret, ok := st.(Retention)
		if !ok {
			continue
		}
		if total >= limit {
			break
		}
		n, err := ret.DeleteDelivered(ctx, olderThan, limit-total)
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("outbox %q: %w", s.names[i], err))
		}
	}
	return total, errors.Join(errs...)
}

var (
	_ Store         = (*MultiStore)(nil)
	_ Notifier      = (*MultiStore)(nil)
	_ SchemaChecker = (*MultiStore)(nil)
	_ Retention     = (*MultiStore)(nil)
)
