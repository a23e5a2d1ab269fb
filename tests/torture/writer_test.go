//go:build torture

package torture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/txoutbox/outbox"
)

// Sizes of the write load, per lane.
const (
	aggregates    = 200 // distinct keys, each owned by one writer so that its write order is known
	writers       = 4
	rollbackEvery = 25  // every 25th transaction of a writer is rolled back
	poisonEvery   = 100 // and one in 100 commits a poison event (the 11th, 111th, ...)
	burstEvery    = 50  // and one in 50 commits a burst of burstEvents events (the 21st, 71st, ...),
	burstEvents   = 60  // so that relays are often busy with full batches when they are killed
	surgeEvents   = 150 // events of a surge, written just before a relay is frozen
	poisonBytes   = 20 << 10
)

// ledger is what the writers of a lane did: every committed event in commit order, and the
// events that were rolled back or are poison.
type ledger struct {
	mu sync.Mutex
	// written holds the committed events, poison included, in the order their COMMIT returned:
	// commit order for a key with one writer; inCommitOrder also orders contended keys.
	written    []*outbox.Message
	poison     map[string]bool
	blockers   map[string]string // poison events at the head of a shared key (ordered lanes): ID -> key
	purged     map[string]bool   // blockers purged with Inspector.Purge to release their key
	rolledBack map[string]bool
	commitPos  map[string]int64 // events of contended keys: their transaction's place in the key's commit order
	commits    int              // committed transactions
	rollbacks  int              // transactions rolled back on purpose
	retried    int              // transactions that failed (database down) and were written again
	uncertain  int              // transactions whose COMMIT failed but which had committed
	heldBack   int              // events held back by a blocker until it was purged
	firstWrite time.Time
	lastWrite  time.Time
	// walBound holds, in WAL mode, a WAL position at or past the end of each event's
	// transaction: the server's insert position read after its COMMIT returned.
	walBound map[string]int64
}

func newLedger() *ledger {
	return &ledger{poison: map[string]bool{}, blockers: map[string]string{}, purged: map[string]bool{}, rolledBack: map[string]bool{}, commitPos: map[string]int64{}, walBound: map[string]int64{}}
}

func (l *ledger) committed(msgs []*outbox.Message, kind eventKind, uncertain bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.written = append(l.written, msgs...)
	for _, m := range msgs {
		if kind == poison || kind == blocker {
			l.poison[m.ID] = true
		}
		if kind == blocker {
			l.blockers[m.ID] = m.Key
		}
	}
	l.commits++
	if uncertain {
		l.uncertain++
	}
	now := time.Now()
	if l.firstWrite.IsZero() {
		l.firstWrite = now
	}
	l.lastWrite = now
}

func (l *ledger) ghosts(msgs []*outbox.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rollbacks++
	for _, m := range msgs {
		if m.ID != "" { // Add assigned it: the event reached the table inside the transaction
			l.rolledBack[m.ID] = true
		}
	}
}

func (l *ledger) retry() { l.mu.Lock(); l.retried++; l.mu.Unlock() }

// blocked returns the blockers not purged yet and the events they hold back: those written
// after a blocker with its key.
func (l *ledger) blocked() (blockers, followers []string) { return l.behind(false) }

// behind returns the blockers (purged ones too, with purged) and the events written after
// them with their key.
func (l *ledger) behind(purged bool) (blockers, followers []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	active := map[string]bool{} // keys whose blocker was written, so far in commit order
	for _, m := range l.written {
		switch key, isBlocker := l.blockers[m.ID]; {
		case isBlocker && (purged || !l.purged[m.ID]):
			blockers = append(blockers, m.ID)
			active[key] = true
		case active[m.Key]:
			followers = append(followers, m.ID)
		}
	}
	return blockers, followers
}

// expected returns the IDs of the events that must arrive now: every committed one except
// poison and what a blocker still holds back.
func (l *ledger) expected() []string {
	_, followers := l.blocked()
	held := make(map[string]bool, len(followers))
	for _, id := range followers {
		held[id] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var want []string
	for _, m := range l.written {
		if !l.poison[m.ID] && !held[m.ID] {
			want = append(want, m.ID)
		}
	}
	return want
}

// writer commits business transactions with their events at a steady pace, as one instance of
// a service would: on failure (database restarting) it retries the same business operation,
// as a real service does, and counts only what committed.
type writer struct {
	id       int
	lane     string
	db       businessDB
	ledger   *ledger
	keys     []string
	interval time.Duration
	rng      *rand.Rand
	// burstSize is how many events a burst transaction writes.
	burstSize int
	// blocker makes transaction blockerAt a poison event with the writer's first key, in an
	// ordered lane, where the dead event must hold back that key (and only that key) until it
	// is purged.
	blocker bool
}

// eventKind is what a transaction writes.
type eventKind int

const (
	normal  eventKind = iota // one to three events for one aggregate
	burst                    // burstSize events for aggregates of the writer (an import)
	poison                   // one oversized event with a key of its own
	blocker                  // one oversized event with a key shared with normal events
)

// blockerAt is the transaction of writer 0 that writes the blocker, early in the run.
const blockerAt = 30

func (w *writer) run(ctx context.Context, stop <-chan struct{}) error {
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		var err error
		switch {
		case n%rollbackEvery == rollbackEvery-1 && n%(2*rollbackEvery) < rollbackEvery:
			err = w.rollBackExplicitly(ctx, n)
		case n%rollbackEvery == rollbackEvery-1:
			err = w.db.failAfterAdd(ctx, w, n)
		case w.blocker && n == blockerAt:
			err = w.commit(ctx, n, blocker)
		case n%poisonEvery == 10:
			err = w.commit(ctx, n, poison)
		case n%burstEvery == 20:
			err = w.commit(ctx, n, burst)
		default:
			err = w.commit(ctx, n, normal)
		}
		if err != nil {
			return fmt.Errorf("writer %d, transaction %d: %w", w.id, n, err)
		}
	}
}

// events builds the events of transaction n: one to three for one aggregate; or one poison
// event, too large for the transport, with a key of its own (so that in ordered mode it
// blocks nothing but itself) or, for a blocker, the key of an aggregate.
func (w *writer) events(n int, kind eventKind) []*outbox.Message {
	switch kind {
	case poison, blocker:
		key := fmt.Sprintf("poison-%d-%d", w.id, n)
		if kind == blocker {
			key = w.keys[0]
		}
		pad := strings.Repeat("x", poisonBytes)
		return []*outbox.Message{{Type: "POISON_OVERSIZED", Key: key,
			Payload: json.RawMessage(fmt.Sprintf(`{"w":%d,"n":%d,"pad":%q}`, w.id, n, pad))}}
	case burst:
		msgs := make([]*outbox.Message, w.burstSize)
		for i := range msgs {
			key := w.keys[w.rng.IntN(len(w.keys))]
			msgs[i] = &outbox.Message{Type: "ORDER_IMPORTED", Key: key,
				Payload: json.RawMessage(fmt.Sprintf(`{"lane":%q,"w":%d,"n":%d,"i":%d,"key":%q}`, w.lane, w.id, n, i, key))}
		}
		return msgs
	}
	key := w.keys[w.rng.IntN(len(w.keys))]
	if w.blocker && n > blockerAt && n%5 == 0 {
		key = w.keys[0] // enough events behind the blocker to see them held back
	}
	types := []string{"ORDER_PLACED", "ORDER_PAID", "ORDER_SHIPPED"}
	msgs := make([]*outbox.Message, 1+w.rng.IntN(3))
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: types[i], Key: key,
			Payload: json.RawMessage(fmt.Sprintf(`{"lane":%q,"w":%d,"n":%d,"i":%d,"key":%q}`, w.lane, w.id, n, i, key))}
	}
	return msgs
}

// commit writes transaction n until it commits.
func (w *writer) commit(ctx context.Context, n int, kind eventKind) error {
	for attempt := 1; ; attempt++ {
		msgs := w.events(n, kind)
		err := w.db.commitOrder(ctx, w.id, n, msgs[0].Key, msgs)
		if err == nil {
			w.ledger.committed(msgs, kind, false)
			w.boundWAL(ctx, msgs)
			return nil
		}
		if errors.Is(err, outbox.ErrInvalidMessage) || ctx.Err() != nil {
			return err
		}
		// The error may have come from COMMIT itself (the server went away while answering),
		// with the transaction committed or not: the business row says which.
		done, err := w.exists(ctx, n)
		if err != nil {
			return err
		}
		if done {
			w.ledger.committed(msgs, kind, true)
			w.boundWAL(ctx, msgs)
			return nil
		}
		w.ledger.retry()
		if !sleep(ctx, time.Duration(min(attempt, 10))*100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// boundWAL records, in WAL mode, a position at or past the end of the committed transaction of
// msgs, for checkWAL. Without an answer (the database went down) the events go unchecked.
func (w *writer) boundWAL(ctx context.Context, msgs []*outbox.Message) {
	db, ok := w.db.(*database)
	if !ok || db.slot == "" {
		return
	}
	lsn, err := walInsertPosition(ctx, db.store.Pool())
	if err != nil {
		return
	}
	w.ledger.mu.Lock()
	defer w.ledger.mu.Unlock()
	for _, m := range msgs {
		w.ledger.walBound[m.ID] = lsn
	}
}

// rollBackExplicitly adds events inside a transaction and rolls it back.
func (w *writer) rollBackExplicitly(ctx context.Context, n int) error {
	msgs := w.events(n, normal)
	defer w.ledger.ghosts(msgs)
	w.db.rollBackOrder(ctx, w.id, -n-1, msgs[0].Key, msgs)
	return nil
}

// exists reports whether transaction n committed, asking until the database answers.
func (w *writer) exists(ctx context.Context, n int) (bool, error) {
	for attempt := 1; ; attempt++ {
		found, err := w.db.orderExists(ctx, w.id, n)
		if err == nil {
			return found, nil
		}
		if !sleep(ctx, time.Duration(min(attempt, 10))*100*time.Millisecond) {
			return false, ctx.Err()
		}
	}
}

// startWriters runs the lane's writers at rate transactions per second in total until stop is
// closed; wait returns the first error. With withBlocker, writer 0 writes a blocker.
func startWriters(ctx context.Context, lane string, db businessDB, l *ledger, rate float64, withBlocker bool, seed uint64, stop <-chan struct{}) (wait func() error) {
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		w := &writer{id: i, lane: lane, db: db, ledger: l,
			interval: time.Duration(float64(writers) / rate * float64(time.Second)),
			rng:      rand.New(rand.NewPCG(seed, uint64(i))), burstSize: burstEvents, blocker: withBlocker && i == 0}
		for k := i; k < aggregates; k += writers {
			w.keys = append(w.keys, fmt.Sprintf("agg-%03d", k))
		}
		wg.Go(func() {
			if err := w.run(ctx, stop); err != nil {
				errs <- err
			}
		})
	}
	return func() error {
		wg.Wait()
		close(errs)
		return <-errs
	}
}

// surger writes surges into a lane: bursts of surgeEvents events for 20 aggregates of their own
// (so every key still has one writer), to load the relays just before a fault.
func surger(ln *lane) *writer {
	w := &writer{id: writers, lane: ln.name, db: ln.outbox, ledger: ln.ledger, burstSize: surgeEvents,
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))}
	for k := range 20 {
		w.keys = append(w.keys, fmt.Sprintf("surge-%02d", k))
	}
	return w
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
