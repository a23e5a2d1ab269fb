package mysql

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/txoutbox/outbox/backend"
)

// MySQL and MariaDB have no LISTEN/NOTIFY, so the wake-up is in-process: Execute, Notify,
// Requeue and Purge signal every store of this process over the same server, database and
// table. Writes from other processes are found by the relay's polling (outbox.Config's
// PollInterval), which stays the correctness fallback either way.

// hub is the wake-up signal of one outbox table, shared by the stores of this process.
type hub struct {
	*backend.Signal
	refs int // stores holding it, guarded by hubsMu
}

var (
	hubsMu sync.Mutex
	hubs   = map[string]*hub{}
)

// acquireHub returns the hub of one outbox table, shared by the stores of this process.
func acquireHub(key string) *hub {
	hubsMu.Lock()
	defer hubsMu.Unlock()
	h := hubs[key]
	if h == nil {
		h = &hub{Signal: backend.NewSignal()}
		hubs[key] = h
	}
	h.refs++
	return h
}

func releaseHub(key string) {
	hubsMu.Lock()
	defer hubsMu.Unlock()
	if h := hubs[key]; h != nil {
		if h.refs--; h.refs == 0 {
			delete(hubs, key)
		}
	}
}

// hubKey names an outbox table on a server. Table names are compared without case, as on
// Windows and macOS servers (lower_case_table_names); a false match only costs a spare wake-up.
func hubKey(addr, db, table string) string {
	return addr + "\x00" + db + "\x00" + strings.ToLower(table)
}

// Listen implements outbox.Notifier: the channel receives a value after each Execute (or
// Notify, Requeue, Purge) by a store of this process over the same table. The channel is
// closed when ctx ends or the store is closed.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("mysql: listen: %w", err)
	}
	ch := s.hub.Subscribe()
	s.mu.Lock()
	if s.listeners == nil {
		s.listeners = map[chan struct{}]func() bool{}
	}
	s.listeners[ch] = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		delete(s.listeners, ch)
		s.mu.Unlock()
		s.hub.Unsubscribe(ch)
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
	for ch, stop := range ls {
		stop()
		s.hub.Unsubscribe(ch)
	}
}

// Notify wakes the relays of this process over this table. Execute does it after its commit;
// call it after committing a transaction of your own in which you called Add, or let the relay
// find the messages at its next poll.
func (s *Store) Notify() { s.hub.Broadcast() }
