// Package memory is an in-process Transport: it hands published messages to subscribers and
// keeps them for assertions. It is the reference transport, the quickstart's broker, and a test
// double that can be told to fail.
package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/txoutbox/outbox"
)

// ErrInjected is the default error of injected failures.
var ErrInjected = errors.New("memory: injected failure")

// Subscriber receives each published message. An error fails that message's publish (it is
// reported in a *outbox.BatchError), so the relay retries it.
type Subscriber func(ctx context.Context, m *outbox.Message) error

// Transport is an in-process broker. The zero value is not usable; call New.
type Transport struct {
	mu       sync.Mutex
	received []*outbox.Message
	subs     map[int]Subscriber
	nextSub  int
	changed  chan struct{} // closed and replaced whenever received grows

	failCalls int              // fail this many whole Publish calls
	failAll   error            // fail every call while set
	failIDs   map[string]error // fail these messages while set
	failErr   error
}

// New returns an empty transport.
func New() *Transport {
	return &Transport{subs: map[int]Subscriber{}, changed: make(chan struct{}), failIDs: map[string]error{}}
}

// KeepsKeyOrder implements outbox.KeyOrderer: Publish delivers in slice order and stops a key at
// its first failed message.
func (t *Transport) KeepsKeyOrder() bool { return true }

// Publish delivers msgs to every subscriber in order and records those that succeeded. After a
// message of a key fails, the key's later messages in the same call are not delivered (they are
// reported failed too), so per-key order holds within a call.
func (t *Transport) Publish(ctx context.Context, msgs []*outbox.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, m := range msgs {
		if m == nil {
			return outbox.Permanent(fmt.Errorf("memory: publish: message %d is nil", i))
		}
	}
	t.mu.Lock()
	if t.failAll != nil {
		err := t.failAll
		t.mu.Unlock()
		return err
	}
	if t.failCalls > 0 {
		t.failCalls--
		err := t.failErr
		t.mu.Unlock()
		return err
	}
	subs := make([]Subscriber, 0, len(t.subs))
	for _, s := range t.subs {
		subs = append(subs, s)
	}
	failIDs := t.failIDs
	t.mu.Unlock()

	batchErr := outbox.NewBatchError()
	delivered := make([]*outbox.Message, 0, len(msgs))
	var stopped map[string]string // key -> ID of its first failed message in this call
	for _, m := range msgs {
		if first, ok := stopped[m.Key]; ok && m.Key != "" {
			batchErr.Add(m.ID, fmt.Errorf("memory: not published: message %s of key %q failed first", first, m.Key))
			continue
		}
		err, failed := failIDs[m.ID]
		if !failed {
			err = deliver(ctx, subs, m)
		}
		if err != nil {
			batchErr.Add(m.ID, err)
			if m.Key != "" {
				if stopped == nil {
					stopped = map[string]string{}
				}
				stopped[m.Key] = m.ID
			}
			continue
		}
		delivered = append(delivered, m)
	}

	t.mu.Lock()
	t.received = append(t.received, delivered...)
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
	return batchErr.ErrOrNil()
}

func deliver(ctx context.Context, subs []Subscriber, m *outbox.Message) error {
	for _, s := range subs {
		if err := s(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// Subscribe registers fn for every message published from now on and returns a function that
// removes it.
func (t *Transport) Subscribe(fn Subscriber) (unsubscribe func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := t.nextSub
	t.nextSub++
	t.subs[id] = fn
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.subs, id)
	}
}

// Received returns the messages published so far, in publish order.
func (t *Transport) Received() []*outbox.Message {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*outbox.Message(nil), t.received...)
}

// Len returns how many messages were published so far.
func (t *Transport) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.received)
}

// Reset forgets what was received.
func (t *Transport) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.received = nil
}

// WaitFor blocks until at least n messages were published, or ctx ends.
func (t *Transport) WaitFor(ctx context.Context, n int) error {
	for {
		t.mu.Lock()
		got, changed := len(t.received), t.changed
		t.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), errors.New("memory: waiting for messages"))
		case <-changed:
		}
	}
}

// FailNext makes the next n Publish calls fail whole with err (ErrInjected when nil).
func (t *Transport) FailNext(n int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failCalls, t.failErr = n, orInjected(err)
}

// FailAll makes every Publish call fail with err until Heal.
func (t *Transport) FailAll(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failAll = orInjected(err)
}

// FailIDs makes the messages with these IDs fail with err, in a *outbox.BatchError, until Heal.
// Wrap err with outbox.Permanent to have them dead-lettered.
func (t *Transport) FailIDs(err error, ids ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	next := make(map[string]error, len(t.failIDs)+len(ids))
	for id, e := range t.failIDs {
		next[id] = e
	}
	for _, id := range ids {
		next[id] = orInjected(err)
	}
	t.failIDs = next
}

// Heal removes every injected failure.
func (t *Transport) Heal() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failCalls, t.failAll, t.failIDs = 0, nil, map[string]error{}
}

func orInjected(err error) error {
	if err == nil {
		return ErrInjected
	}
	return err
}
