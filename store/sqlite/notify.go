package sqlite

import (
	"context"
	"fmt"
	"sync"
)

// hub broadcasts "new messages may have committed" to listeners.
type hub struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// broadcast sends one coalescing signal to every listener. It never blocks: it runs inside
// SQLite's commit hook.
func (h *hub) broadcast() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- struct{}{}:
		default: // a signal is already waiting; they coalesce
		}
	}
}

func (h *hub) subscribe() chan struct{} {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch
}

// unsubscribe closes ch once; later calls do nothing.
func (h *hub) unsubscribe(ch chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}

// Listen implements outbox.Notifier: the channel receives a value after each commit that
// inserted messages through a store over this file and table in this process (or called
// Notify). Writes from other processes are found by the relay's polling. The channel is closed
// when ctx ends or the store is closed.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("sqlite: listen: %w", err)
	}
	h := s.hub.Load()
	ch := h.subscribe()
	s.mu.Lock()
	if s.listeners == nil {
		s.listeners = map[chan struct{}]func() bool{}
	}
	s.listeners[ch] = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		delete(s.listeners, ch)
		s.mu.Unlock()
		h.unsubscribe(ch)
	})
	s.mu.Unlock()
	if s.closed.Load() { // Close ran meanwhile and may have missed this listener
		s.closeListeners()
	}
	return ch, nil
}

// closeListeners closes the channels Listen returned, for Close.
func (s *Store) closeListeners() {
	s.mu.Lock()
	ls := s.listeners
	s.listeners = nil
	s.mu.Unlock()
	h := s.hub.Load()
	for ch, stop := range ls {
		stop()
		h.unsubscribe(ch)
	}
}

// Notify wakes the listeners of every store over this outbox in this process. Call it after
// committing a transaction in which you called Add on a database the store did not open (a
// Config.DB): the store cannot hook those commits. Stores opened from Path or DSN signal by
// themselves; Execute always does.
func (s *Store) Notify() { s.signal() }
