//go:build torture

package torture

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/txoutbox/outbox"
)

// contention makes a lane's writers share keys: perKey writers write each key, and each holds
// its transaction open for a random 0 to maxHold after adding its events, so that transactions
// of one key overlap and commit in an order nobody chose.
type contention struct {
	keys, writers, perKey int
}

// maxHold is the longest a contended writer keeps its transaction open after Add.
const maxHold = 50 * time.Millisecond

// commitOrderDDL creates the table that gives each committed transaction its place in its
// key's commit order. A transaction increments its key's row; the row stays locked until the
// transaction ends, so the next transaction of that key reads the incremented value only once
// this one committed (or rolled back, in which case it never counted). The values of one key's
// committed transactions are therefore in commit order, whatever the outbox does, and whatever
// order their COMMIT calls returned in.
const commitOrderDDL = `CREATE TABLE %s.commit_order (key text PRIMARY KEY, n bigint NOT NULL)`

// contender is a writer of a contended lane. Its transaction n: add one to three events for a
// random key of its group, wait, take the key's next commit position, wait, commit (every
// rollbackEvery-th transaction rolls back instead).
type contender struct {
	id       int
	lane     string
	db       contendedDB
	ledger   *ledger
	keys     []string
	interval time.Duration
	rng      *rand.Rand
}

func (c *contender) run(ctx context.Context, stop <-chan struct{}) error {
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := c.transaction(ctx, n, n%rollbackEvery == rollbackEvery-1); err != nil {
			return fmt.Errorf("contended writer %d, transaction %d: %w", c.id, n, err)
		}
	}
}

func (c *contender) transaction(ctx context.Context, n int, rollBack bool) error {
	key := c.keys[c.rng.IntN(len(c.keys))]
	types := []string{"ORDER_PLACED", "ORDER_PAID", "ORDER_SHIPPED"}
	msgs := make([]*outbox.Message, 1+c.rng.IntN(3))
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: types[i], Key: key,
			Payload: json.RawMessage(fmt.Sprintf(`{"lane":%q,"cw":%d,"n":%d,"i":%d,"key":%q}`, c.lane, c.id, n, i, key))}
	}
	tx, err := c.db.beginContended(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.rollback(context.WithoutCancel(ctx)) }()
	// Add makes writers of one key take turns until commit; the waits let a second writer of
	// the key arrive while this transaction is open, at every point of it.
	if err := tx.add(ctx, msgs...); err != nil {
		return fmt.Errorf("add: %w", err)
	}
	if !sleep(ctx, c.hold()) {
		return ctx.Err()
	}
	pos, err := tx.takePosition(ctx, key)
	if err != nil {
		return fmt.Errorf("commit position: %w", err)
	}
	if !sleep(ctx, c.hold()) {
		return ctx.Err()
	}
	if rollBack {
		if err := tx.rollback(ctx); err != nil {
			return err
		}
		c.ledger.ghosts(msgs)
		return nil
	}
	if err := tx.commit(ctx); err != nil {
		// No fault of these scenarios touches the database: a failed COMMIT is a failure.
		return fmt.Errorf("commit: %w", err)
	}
	c.ledger.committedAt(msgs, pos)
	return nil
}

func (c *contender) hold() time.Duration { return time.Duration(c.rng.Int64N(int64(maxHold / 2))) }

// startContenders runs a contended lane's writers at rate transactions per second in total
// until stop is closed; wait returns the first error. Writer i belongs to group i/perKey, and
// the writers of one group share the group's keys.
func startContenders(ctx context.Context, lane string, db contendedDB, l *ledger, spec contention, rate float64, seed uint64, stop <-chan struct{}) (wait func() error, err error) {
	groups := spec.writers / spec.perKey
	var keys []string
	for k := range spec.keys {
		keys = append(keys, fmt.Sprintf("hot-%03d", k))
	}
	// Every key's row exists before the first transaction, so that taking a position is an
	// UPDATE, whose row lock orders the key's transactions.
	if err := db.createPositions(ctx, keys); err != nil {
		return nil, fmt.Errorf("commit_order rows: %w", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, spec.writers)
	for i := range spec.writers {
		c := &contender{id: i, lane: lane, db: db, ledger: l,
			interval: time.Duration(float64(spec.writers) / rate * float64(time.Second)),
			rng:      rand.New(rand.NewPCG(seed, uint64(i)))}
		for k := i / spec.perKey; k < spec.keys; k += groups {
			c.keys = append(c.keys, keys[k])
		}
		wg.Go(func() {
			if err := c.run(ctx, stop); err != nil {
				errs <- err
			}
		})
	}
	return func() error {
		wg.Wait()
		close(errs)
		return <-errs
	}, nil
}

// committedAt records a committed transaction of a contended key with its commit position.
func (l *ledger) committedAt(msgs []*outbox.Message, pos int64) {
	l.mu.Lock()
	for _, m := range msgs {
		l.commitPos[m.ID] = pos
	}
	l.mu.Unlock()
	l.committed(msgs, normal, false)
}

// inCommitOrder returns the committed events with each key's events in commit order. l.written
// is in the order the writers' COMMIT calls returned, which for two transactions of one key
// that committed moments apart may be either; the events with a commit position are put back
// in position order, within the slots their key holds (the events of one transaction keep
// their order). Events of other keys are where they were. The caller holds l.mu.
func (l *ledger) inCommitOrder() []*outbox.Message {
	out := append([]*outbox.Message(nil), l.written...)
	slots := map[string][]int{}
	for i, m := range out {
		if _, ok := l.commitPos[m.ID]; ok {
			slots[m.Key] = append(slots[m.Key], i)
		}
	}
	for _, idx := range slots {
		msgs := make([]*outbox.Message, len(idx))
		for j, i := range idx {
			msgs[j] = out[i]
		}
		slices.SortStableFunc(msgs, func(a, b *outbox.Message) int { return cmp.Compare(l.commitPos[a.ID], l.commitPos[b.ID]) })
		for j, i := range idx {
			out[i] = msgs[j]
		}
	}
	return out
}
