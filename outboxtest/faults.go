package outboxtest

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"

	"github.com/txoutbox/outbox"
)

// ErrInjected is the error the fault kit injects.
var ErrInjected = errors.New("outboxtest: injected fault")

// FaultyTransport wraps a transport and injects failures: whole calls failing at a rate,
// messages failing at a rate in a partial *outbox.BatchError, chosen IDs failing, or every call
// hanging until its context ends. The zero rates inject nothing; change them at any time.
type FaultyTransport struct {
	next outbox.Transport

	mu          sync.Mutex
	rng         *rand.Rand
	failRate    float64
	partialRate float64
	failIDs     map[string]error
	hang        bool
	calls       int
}

// NewFaultyTransport wraps next; seed makes the injected failures repeatable.
func NewFaultyTransport(next outbox.Transport, seed uint64) *FaultyTransport {
	return &FaultyTransport{next: next, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), failIDs: map[string]error{}}
}

// SetFailRate makes this fraction of Publish calls fail whole, before reaching next.
func (f *FaultyTransport) SetFailRate(p float64) { f.mu.Lock(); f.failRate = p; f.mu.Unlock() }

// SetPartialRate makes this fraction of the messages of each call fail in a *outbox.BatchError;
// the others are published through next.
func (f *FaultyTransport) SetPartialRate(p float64) { f.mu.Lock(); f.partialRate = p; f.mu.Unlock() }

// FailIDs makes these messages fail with err (ErrInjected when nil) on every publish. Wrap err
// with outbox.Permanent for poison messages.
func (f *FaultyTransport) FailIDs(err error, ids ...string) {
	if err == nil {
		err = ErrInjected
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		f.failIDs[id] = err
	}
}

// SetHang makes every Publish call block until its context ends.
func (f *FaultyTransport) SetHang(on bool) { f.mu.Lock(); f.hang = on; f.mu.Unlock() }

// Calls returns how many Publish calls were made.
func (f *FaultyTransport) Calls() int { f.mu.Lock(); defer f.mu.Unlock(); return f.calls }

// Publish implements outbox.Transport.
func (f *FaultyTransport) Publish(ctx context.Context, msgs []*outbox.Message) error {
	f.mu.Lock()
	f.calls++
	if f.hang {
		f.mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	}
	if f.failRate > 0 && f.rng.Float64() < f.failRate {
		f.mu.Unlock()
		return ErrInjected
	}
	batchErr := outbox.NewBatchError()
	pass := make([]*outbox.Message, 0, len(msgs))
	for _, m := range msgs {
		if err, ok := f.failIDs[m.ID]; ok {
			batchErr.Add(m.ID, err)
		} else if f.partialRate > 0 && f.rng.Float64() < f.partialRate {
			batchErr.Add(m.ID, ErrInjected)
		} else {
			pass = append(pass, m)
		}
	}
	f.mu.Unlock()

	if len(pass) > 0 {
		err := f.next.Publish(ctx, pass)
		var inner *outbox.BatchError
		switch {
		case errors.As(err, &inner):
			for id, e := range inner.Failed {
				batchErr.Add(id, e)
			}
		case err != nil && len(batchErr.Failed) == 0:
			return err
		case err != nil:
			for _, m := range pass {
				batchErr.Add(m.ID, err)
			}
		}
	}
	return batchErr.ErrOrNil()
}

// FaultyStore wraps a store and injects failures into Claim, Ack and Nack at set rates, or
// simulates a relay crash: after CrashAfterAcks(n), acks and nacks are silently lost, as when a
// process dies after publishing and before its ack reaches the database. The optional
// Notifier, Inspector and Retention of the wrapped store stay reachable.
type FaultyStore struct {
	next outbox.Store

	mu                           sync.Mutex
	rng                          *rand.Rand
	claimRate, ackRate, nackRate float64
	acksBeforeCrash              int // -1: never crash
	lost                         []string
}

// NewFaultyStore wraps next; seed makes the injected failures repeatable.
func NewFaultyStore(next outbox.Store, seed uint64) *FaultyStore {
	return &FaultyStore{next: next, rng: rand.New(rand.NewPCG(seed, seed^0x2545f4914f6cdd1d)), acksBeforeCrash: -1}
}

// SetFailRates makes these fractions of Claim, Ack and Nack calls fail with ErrInjected.
func (f *FaultyStore) SetFailRates(claim, ack, nack float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claimRate, f.ackRate, f.nackRate = claim, ack, nack
}

// CrashAfterAcks lets n more Ack calls through and then loses every later Ack and Nack.
func (f *FaultyStore) CrashAfterAcks(n int) { f.mu.Lock(); f.acksBeforeCrash = n; f.mu.Unlock() }

// Lost returns the IDs whose ack or nack was lost to a simulated crash: the only messages
// allowed to be published twice.
func (f *FaultyStore) Lost() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lost...)
}

func (f *FaultyStore) fail(rate float64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return rate > 0 && f.rng.Float64() < rate
}

// crashed reports whether a settle call is lost, recording its IDs.
func (f *FaultyStore) crashed(isAck bool, ids []string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.acksBeforeCrash < 0 {
		return false
	}
	if isAck && f.acksBeforeCrash > 0 {
		f.acksBeforeCrash--
		return false
	}
	if f.acksBeforeCrash == 0 {
		f.lost = append(f.lost, ids...)
		return true
	}
	return false
}

// Claim implements outbox.Store.
func (f *FaultyStore) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	if f.fail(f.claimRate) {
		return nil, ErrInjected
	}
	return f.next.Claim(ctx, req)
}

// Ack implements outbox.Store.
func (f *FaultyStore) Ack(ctx context.Context, token string, ids []string) (int, error) {
	if f.crashed(true, ids) {
		return len(ids), nil // the relay believes it acked: as if it died right after
	}
	if f.fail(f.ackRate) {
		return 0, ErrInjected
	}
	return f.next.Ack(ctx, token, ids)
}

// Nack implements outbox.Store.
func (f *FaultyStore) Nack(ctx context.Context, token string, failures []outbox.Failure) (int, error) {
	ids := make([]string, len(failures))
	for i, fl := range failures {
		ids[i] = fl.ID
	}
	if f.crashed(false, ids) {
		return len(ids), nil
	}
	if f.fail(f.nackRate) {
		return 0, ErrInjected
	}
	return f.next.Nack(ctx, token, failures)
}

// Listen forwards to the wrapped store's Notifier, if any.
func (f *FaultyStore) Listen(ctx context.Context) (<-chan struct{}, error) {
	n, ok := f.next.(outbox.Notifier)
	if !ok {
		return nil, errors.New("outboxtest: wrapped store has no notifier")
	}
	return n.Listen(ctx)
}
