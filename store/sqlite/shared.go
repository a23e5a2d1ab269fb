package sqlite

import (
	"context"
	"strings"
	"sync"

	"github.com/txoutbox/outbox/backend"
)

// What the stores of one process share per database file: a write lock, and per outbox table a
// notification hub. Several stores over one file arise when a service runs two relays, or a
// relay and a CLI command, in one process.
var (
	writeLocks = newRegistry(func() *writeLock { return &writeLock{sem: make(chan struct{}, 1)} })
	hubs       = newRegistry(backend.NewSignal)
)

// writeLock serializes the write transactions of every store over one file in this process.
// SQLite admits one writer per file anyway; queueing here, first come first served and bounded
// by each caller's context, replaces the busy handler's polling, under which a writer among
// many can starve past its busy timeout and fail with SQLITE_BUSY. Between processes the busy
// timeout still applies.
type writeLock struct{ sem chan struct{} }

func (l *writeLock) lock(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *writeLock) unlock() { <-l.sem }

// registry hands out one shared value per key, reference counted. An empty key (an in-memory
// or temporary database, private to one connection pool) gets a value of its own.
type registry[T any] struct {
	mu    sync.Mutex
	m     map[string]*entry[T]
	fresh func() *T
}

type entry[T any] struct {
	v    *T
	refs int
}

func newRegistry[T any](fresh func() *T) *registry[T] {
	return &registry[T]{m: map[string]*entry[T]{}, fresh: fresh}
}

func (r *registry[T]) acquire(key string) *T {
	if key == "" {
		return r.fresh()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.m[key]
	if e == nil {
		e = &entry[T]{v: r.fresh()}
		r.m[key] = e
	}
	e.refs++
	return e.v
}

func (r *registry[T]) release(key string) {
	if key == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.m[key]; e != nil {
		if e.refs--; e.refs == 0 {
			delete(r.m, key)
		}
	}
}

// hubKey names the outbox table of a file; SQLite table names are case-insensitive.
func hubKey(file, table string) string {
	if file == "" {
		return ""
	}
	return file + "\x00" + strings.ToLower(table)
}
