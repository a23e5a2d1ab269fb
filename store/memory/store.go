// Package memory is an in-process outbox.Store with a transactional write side: the reference
// store, and a test double for relay and middleware tests that need no database. It passes the
// full store suite (outboxtest.RunStoreSuite).
package memory

import (
	"container/list"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Store is an in-memory outbox.Store with a transactional write side. It passes the full
// store suite, so relay tests can run against it without a database. Set the exported fields
// before first use.
type Store struct {
	// KeepDelivered keeps acknowledged messages as delivered (for Retention and Counts) instead
	// of deleting them. Default false.
	KeepDelivered bool
	// MaxPayloadBytes bounds Payload plus Result. Default outbox.DefaultMaxPayloadBytes.
	MaxPayloadBytes int
	// WriteHooks run on every message Add writes.
	WriteHooks []backend.WriteHook

	mu        sync.Mutex
	queue     *list.List            // of *entry: every undelivered message (pending or dead), in write order
	byKey     map[string]*list.List // the same, per key ("" for unkeyed ones)
	keys      []string              // the keys of byKey but "", sorted
	byID      map[string]*list.Element
	delivered map[string]*entry
	listeners map[chan struct{}]struct{}
	// lastKey is the key the last ordered claim ended with (turned: there was one), where the
	// next one starts its turn.
	lastKey string
	turned  bool
}

type entry struct {
	keyEl       *list.Element // in byKey[msg.Key]
	msg         outbox.Message
	status      outbox.Status
	availableAt time.Time
	leaseToken  string
	leaseUntil  time.Time
	lastError   string
	diedAt      time.Time
	deliveredAt time.Time
}

var (
	_ outbox.Store     = (*Store)(nil)
	_ outbox.Notifier  = (*Store)(nil)
	_ outbox.Inspector = (*Store)(nil)
	_ outbox.Retention = (*Store)(nil)
)

// New returns an empty store that deletes messages on ack.
func New() *Store { return &Store{} }

func (s *Store) init() {
	if s.queue == nil {
		s.queue = list.New()
		s.byKey = map[string]*list.List{}
		s.byID = map[string]*list.Element{}
		s.delivered = map[string]*entry{}
		s.listeners = map[chan struct{}]struct{}{}
	}
}

// Tx is a write transaction on a Store: nothing it adds is visible before Commit.
type Tx struct {
	store *Store
	msgs  []*outbox.Message
	done  bool
}

// Begin starts a write transaction.
func (s *Store) Begin() *Tx { return &Tx{store: s} }

// Add validates msgs (backend.Prepare) and stages them.
func (tx *Tx) Add(ctx context.Context, msgs ...*outbox.Message) error {
	if tx.done {
		return fmt.Errorf("memory: add: transaction already ended")
	}
	opts := backend.WriteOptions{MaxPayloadBytes: tx.store.MaxPayloadBytes, Hooks: tx.store.WriteHooks}
	if err := backend.Prepare(ctx, msgs, opts); err != nil {
		return fmt.Errorf("memory: add: %w", err)
	}
	for _, m := range msgs {
		tx.msgs = append(tx.msgs, m.Clone())
	}
	return nil
}

// Commit stores every staged message at once, or none when an ID already exists.
func (tx *Tx) Commit() error {
	if tx.done {
		return fmt.Errorf("memory: commit: transaction already ended")
	}
	tx.done = true
	s := tx.store
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	seen := map[string]bool{}
	for _, m := range tx.msgs {
		if _, dup := s.byID[m.ID]; dup || seen[m.ID] || s.delivered[m.ID] != nil {
			return fmt.Errorf("memory: commit: duplicate message id %s", m.ID)
		}
		seen[m.ID] = true
	}
	for _, m := range tx.msgs {
		e := &entry{msg: *m, status: outbox.StatusPending, availableAt: m.CreatedAt}
		s.byID[m.ID] = s.queue.PushBack(e)
		l := s.byKey[m.Key]
		if l == nil {
			l = list.New()
			s.byKey[m.Key] = l
			if m.Key != "" {
				i, _ := slices.BinarySearch(s.keys, m.Key)
				s.keys = slices.Insert(s.keys, i, m.Key)
			}
		}
		e.keyEl = l.PushBack(e)
	}
	if len(tx.msgs) > 0 {
		s.signal()
	}
	return nil
}

// Rollback discards the staged messages.
func (tx *Tx) Rollback() { tx.done, tx.msgs = true, nil }

// Add writes msgs in a transaction of their own.
func (s *Store) Add(ctx context.Context, msgs ...*outbox.Message) error {
	tx := s.Begin()
	if err := tx.Add(ctx, msgs...); err != nil {
		return err
	}
	return tx.Commit()
}

// Claim implements outbox.Store.
func (s *Store) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("memory: claim: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	now := time.Now()
	var picked []*entry
	if req.Ordered {
		picked = s.runs(req.Limit, now)
	} else {
		for el := s.queue.Front(); el != nil && len(picked) < req.Limit; el = el.Next() {
			if e := el.Value.(*entry); e.claimable(now) {
				picked = append(picked, e)
			}
		}
	}
	out := make([]*outbox.Message, len(picked))
	for i, e := range picked {
		e.leaseToken, e.leaseUntil = req.Token, now.Add(req.Lease)
		m := e.msg
		if m.Headers != nil {
			m.Headers = maps.Clone(m.Headers)
		}
		out[i] = &m
	}
	return out, nil
}

func (e *entry) claimable(now time.Time) bool {
	return e.status == outbox.StatusPending && !e.availableAt.After(now) && (e.leaseToken == "" || !e.leaseUntil.After(now))
}

// runs picks an ordered claim: the keys take turns, from the one after where the last ordered
// claim ended, and each due key gives its whole run (its head, which must be due, and the due
// messages after it, in order) up to limit, so a claim holds a few keys and several claims can
// be in flight over different keys, as PostgreSQL's do. A key's run starts at its oldest
// undelivered message (pending, leased or dead) and stops at its first one that is not due.
// Unkeyed messages take a turn of their own, last, oldest first.
func (s *Store) runs(limit int, now time.Time) []*entry {
	// The keys in order, then the unkeyed turn; start after the key the last ordered claim
	// ended with, and wrap around.
	keys := s.keys
	if s.byKey[""] != nil {
		keys = append(keys[:len(keys):len(keys)], "")
	}
	start := 0
	if s.turned && s.lastKey != "" {
		start, _ = slices.BinarySearch(s.keys, s.lastKey)
		if start < len(s.keys) && s.keys[start] == s.lastKey {
			start++
		}
	}
	var out []*entry
	for i := 0; i < len(keys) && len(out) < limit; i++ {
		k := keys[(start+i)%len(keys)]
		took := false
		for el := s.byKey[k].Front(); el != nil && len(out) < limit; el = el.Next() {
			e := el.Value.(*entry)
			if !e.claimable(now) {
				if k == "" {
					continue // an unkeyed message holds back no other
				}
				break
			}
			out, took = append(out, e), true
		}
		if took {
			s.lastKey, s.turned = k, true
		}
	}
	return out
}

// remove takes an undelivered message out of the queue and its key's list.
func (s *Store) remove(el *list.Element) {
	e := s.queue.Remove(el).(*entry)
	if l := s.byKey[e.msg.Key]; l != nil {
		l.Remove(e.keyEl)
		if l.Len() == 0 {
			delete(s.byKey, e.msg.Key)
			if i, found := slices.BinarySearch(s.keys, e.msg.Key); found {
				s.keys = slices.Delete(s.keys, i, i+1)
			}
		}
	}
}

// Ack implements outbox.Store.
func (s *Store) Ack(ctx context.Context, token string, ids []string) (int, error) {
	if err := backend.CheckToken(token); err != nil {
		return 0, fmt.Errorf("memory: ack: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	now := time.Now()
	n := 0
	for _, id := range ids {
		el, e := s.heldBy(id, token)
		if e == nil {
			continue
		}
		n++
		s.remove(el)
		delete(s.byID, id)
		if s.KeepDelivered {
			e.status, e.deliveredAt, e.leaseToken = outbox.StatusDelivered, now, ""
			s.delivered[id] = e
		}
	}
	return n, nil
}

// Nack implements outbox.Store.
func (s *Store) Nack(ctx context.Context, token string, failures []outbox.Failure) (int, error) {
	if err := backend.CheckToken(token); err != nil {
		return 0, fmt.Errorf("memory: nack: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	now := time.Now()
	n := 0
	for _, f := range failures {
		_, e := s.heldBy(f.ID, token)
		if e == nil {
			continue
		}
		n++
		e.leaseToken, e.leaseUntil = "", time.Time{}
		switch {
		case f.Dead:
			e.msg.Attempts++
			e.lastError = backend.StorableText(f.Error)
			e.status, e.diedAt = outbox.StatusDead, now
		case f.Release:
			e.availableAt = now.Add(f.Delay)
		default:
			e.msg.Attempts++
			e.lastError = backend.StorableText(f.Error)
			e.availableAt = now.Add(f.Delay)
		}
	}
	return n, nil
}

// heldBy returns the pending message id when the claim with this token holds its lease (the
// only case in which an ack or nack counts), or a nil entry. The caller holds s.mu.
func (s *Store) heldBy(id, token string) (*list.Element, *entry) {
	el, ok := s.byID[id]
	if !ok {
		return nil, nil
	}
	e := el.Value.(*entry)
	if e.status != outbox.StatusPending || e.leaseToken != token {
		return nil, nil
	}
	return el, e
}

// Listen implements outbox.Notifier: it signals after every commit.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.init()
	s.listeners[ch] = struct{}{}
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		delete(s.listeners, ch)
		s.mu.Unlock()
		close(ch)
	}()
	return ch, nil
}

func (s *Store) signal() {
	for ch := range s.listeners {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Counts implements outbox.Inspector.
func (s *Store) Counts(ctx context.Context) (outbox.Counts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	c := outbox.Counts{Delivered: int64(len(s.delivered))}
	for el := s.queue.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		if e.status == outbox.StatusDead {
			c.Dead++
			continue
		}
		c.Pending++
		if c.OldestPending.IsZero() || e.msg.CreatedAt.Before(c.OldestPending) {
			c.OldestPending = e.msg.CreatedAt
		}
	}
	return c, ctx.Err()
}

// ListDead implements outbox.Inspector.
func (s *Store) ListDead(ctx context.Context, f outbox.DeadFilter) ([]outbox.DeadLetter, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []outbox.DeadLetter
	s.eachDead(f, func(el *list.Element, e *entry) bool {
		m := e.msg
		m.Headers = maps.Clone(m.Headers)
		out = append(out, outbox.DeadLetter{Message: m, LastError: e.lastError, DiedAt: e.diedAt})
		return len(out) < limit
	})
	return out, ctx.Err()
}

// Requeue implements outbox.Inspector.
func (s *Store) Requeue(ctx context.Context, f outbox.DeadFilter) (int, error) {
	n := 0
	now := time.Now()
	s.eachDead(f, func(el *list.Element, e *entry) bool {
		e.status, e.availableAt, e.msg.Attempts, e.diedAt, e.leaseToken = outbox.StatusPending, now, 0, time.Time{}, ""
		n++
		return f.Limit <= 0 || n < f.Limit
	})
	if n > 0 {
		s.mu.Lock()
		s.signal()
		s.mu.Unlock()
	}
	return n, ctx.Err()
}

// Purge implements outbox.Inspector.
func (s *Store) Purge(ctx context.Context, f outbox.DeadFilter) (int, error) {
	n := 0
	s.eachDead(f, func(el *list.Element, e *entry) bool {
		s.remove(el)
		delete(s.byID, e.msg.ID)
		n++
		return f.Limit <= 0 || n < f.Limit
	})
	return n, ctx.Err()
}

// eachDead calls fn, under the lock, on each dead message matching f until fn returns false.
func (s *Store) eachDead(f outbox.DeadFilter, fn func(*list.Element, *entry) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	for el := s.queue.Front(); el != nil; {
		next := el.Next() // fn may remove el
		e := el.Value.(*entry)
		if e.status == outbox.StatusDead && matchDead(f, &e.msg) && !fn(el, e) {
			return
		}
		el = next
	}
}

func matchDead(f outbox.DeadFilter, m *outbox.Message) bool {
	return (len(f.IDs) == 0 || slices.Contains(f.IDs, m.ID)) &&
		(f.Type == "" || f.Type == m.Type) &&
		(f.Key == "" || f.Key == m.Key)
}

// DeleteDelivered implements outbox.Retention.
func (s *Store) DeleteDelivered(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("memory: delete delivered: %w", backend.InvalidArgument("limit", "must be positive"))
	}
	cutoff := time.Now().Add(-olderThan)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	n := 0
	for id, e := range s.delivered {
		if n == limit {
			break
		}
		if e.deliveredAt.Before(cutoff) {
			delete(s.delivered, id)
			n++
		}
	}
	return n, ctx.Err()
}
