package backend

import "sync"

// Signal broadcasts "new messages may have committed" to in-process listeners: the wake-up of
// stores whose database has no notifications of its own (SQLite, MySQL), shared by the stores
// of one process over one outbox. Signals coalesce: a listener that has not read the last one
// gets no second.
type Signal struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// NewSignal returns a Signal with no listeners.
func NewSignal() *Signal { return &Signal{subs: map[chan struct{}]struct{}{}} }

// Broadcast sends one coalescing signal to every listener. It never blocks, so it may run
// inside a commit hook.
func (s *Signal) Broadcast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default: // a signal is already waiting; they coalesce
		}
	}
}

// Subscribe returns a new listener's channel.
func (s *Signal) Subscribe() chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch
}

// Unsubscribe closes ch once; later calls do nothing.
func (s *Signal) Unsubscribe(ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subs[ch]; ok {
		delete(s.subs, ch)
		close(ch)
	}
}
