package dedup

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/txoutbox/outbox"
)

// MemoryConfig tunes a MemoryStore.
type MemoryConfig struct {
	// MaxEntries bounds how many IDs the store remembers; the least recently marked are
	// forgotten first. Default 100000 (about 15 MB).
	MaxEntries int
}

func (c MemoryConfig) withDefaults() MemoryConfig {
	if c.MaxEntries == 0 {
		c.MaxEntries = 100_000
	}
	return c
}

// Validate names the first invalid field.
func (c MemoryConfig) Validate() error {
	if c.MaxEntries < 0 {
		return &outbox.ConfigError{Component: "dedup", Field: "MaxEntries", Problem: "is negative"}
	}
	return nil
}

// MemoryStore is a Store in process memory: a bounded LRU whose entries expire. It dedupes the
// redeliveries of one relay process only; relays in several processes need a shared store such
// as RedisStore.
type MemoryStore struct {
	max int
	now func() time.Time // replaced in tests

	mu    sync.Mutex
	order *list.List // of *memoryEntry, most recently marked first
	byID  map[string]*list.Element
}

type memoryEntry struct {
	id      string
	expires time.Time
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store, or the error cfg.Validate reports.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &MemoryStore{max: cfg.MaxEntries, now: time.Now, order: list.New(), byID: map[string]*list.Element{}}, nil
}

// Seen implements Store. Expired entries it meets are dropped.
func (s *MemoryStore) Seen(ctx context.Context, ids []string) (map[string]bool, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var seen map[string]bool
	for _, id := range ids {
		el, ok := s.byID[id]
		if !ok {
			continue
		}
		if !now.Before(el.Value.(*memoryEntry).expires) {
			s.remove(el)
			continue
		}
		if seen == nil {
			seen = make(map[string]bool)
		}
		seen[id] = true
	}
	return seen, nil
}

// Mark implements Store.
func (s *MemoryStore) Mark(ctx context.Context, ids []string, ttl time.Duration) error {
	expires := s.now().Add(ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if el, ok := s.byID[id]; ok {
			el.Value.(*memoryEntry).expires = expires
			s.order.MoveToFront(el)
			continue
		}
		s.byID[id] = s.order.PushFront(&memoryEntry{id: id, expires: expires})
	}
	for s.order.Len() > s.max {
		s.remove(s.order.Back())
	}
	return nil
}

// Len returns how many IDs the store holds, expired ones included until they are dropped.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

func (s *MemoryStore) remove(el *list.Element) {
	s.order.Remove(el)
	delete(s.byID, el.Value.(*memoryEntry).id)
}
