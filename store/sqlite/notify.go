package sqlite

import (
	"context"
	"fmt"
)

// Listen implements outbox.Notifier: the channel receives a value after each commit that
// inserted messages through a store over this file and table in this process (or called
// Notify). Writes from other processes are found by the relay's polling. The channel is closed
// when ctx ends or the store is closed.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("sqlite: listen: %w", err)
	}
	h := s.hub.Load()
	ch := h.Subscribe()
	s.mu.Lock()
	if s.listeners == nil {
		s.listeners = map[chan struct{}]func() bool{}
	}
	s.listeners[ch] = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		delete(s.listeners, ch)
		s.mu.Unlock()
		h.Unsubscribe(ch)
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
		h.Unsubscribe(ch)
	}
}

// Notify wakes the listeners of every store over this outbox in this process. Call it after
// committing a transaction in which you called Add on a database the store did not open (a
// Config.DB): the store cannot hook those commits. Stores opened from Path or DSN signal by
// themselves; Execute always does.
func (s *Store) Notify() { s.signal() }
