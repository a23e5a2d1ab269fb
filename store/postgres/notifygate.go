package postgres

import (
	"context"
	"sync"
	"time"
)

// notifyGate decides which writes NOTIFY. PostgreSQL serialises the commits of notifying
// transactions (they hold a global lock through their WAL flush), so a NOTIFY in every write
// halves write throughput under concurrency. One wake-up per interval is all a relay needs: the
// first write of an interval notifies inside its transaction (so the signal fires on commit);
// later writes in the interval skip it and are covered by a trailing NOTIFY, sent on its own one
// interval later and again while skipped writes keep coming. A skipped write that commits after
// every later signal is still found by the relay's poll.
type notifyGate struct {
	interval time.Duration
	send     func(ctx context.Context) // the out-of-band NOTIFY

	mu       sync.Mutex
	last     time.Time   // when a write last notified in its transaction
	timer    *time.Timer // the pending trailing NOTIFY, nil when none
	skipped  bool        // a write skipped since the timer was armed
	closed   bool
	inFlight sync.WaitGroup
}

// inTx reports whether the write about to happen should NOTIFY inside its transaction.
func (g *notifyGate) inTx() bool {
	if g.interval <= 0 {
		return true
	}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.last) >= g.interval {
		g.last = now
		return true
	}
	g.skipped = true
	if g.timer == nil && !g.closed {
		g.arm()
	}
	return false
}

// arm schedules a trailing NOTIFY; g.mu is held.
func (g *notifyGate) arm() {
	g.skipped = false
	g.inFlight.Add(1)
	g.timer = time.AfterFunc(g.interval, func() {
		defer g.inFlight.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		g.send(ctx)
		cancel()
		g.mu.Lock()
		defer g.mu.Unlock()
		g.timer = nil
		if g.skipped && !g.closed {
			g.arm() // writes skipped while this one was pending: cover them too
		}
	})
}

// close cancels a pending trailing NOTIFY and waits for one being sent.
func (g *notifyGate) close() {
	g.mu.Lock()
	g.closed = true
	if g.timer != nil && g.timer.Stop() {
		g.timer = nil
		g.inFlight.Done()
	}
	g.mu.Unlock()
	g.inFlight.Wait()
}
