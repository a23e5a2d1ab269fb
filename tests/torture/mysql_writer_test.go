//go:build torture

package torture

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	mysqlstore "github.com/txoutbox/outbox/store/mysql"
)

// mysqlDatabase is one MySQL lane's database: the outbox table and the business tables next to
// it.
type mysqlDatabase struct {
	name  string
	url   string            // the database's mysql:// URL, which the relays connect to
	store *mysqlstore.Store // the writers' store (the relays open their own, in their processes)
}

// newMySQLDatabase creates a lane's database on the server of serverURL, through admin, which
// the test's cleanup drops again.
func newMySQLDatabase(t *testing.T, admin *sql.DB, serverURL, name string) *mysqlDatabase {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quoted := "`" + name + "`" // name is the lane's identifier: letters, digits and _
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+quoted); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quoted); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	dbURL, err := withDatabase(serverURL, name)
	if err != nil {
		t.Fatal(err)
	}
	store, err := mysqlstore.New(ctx, mysqlstore.Config{URL: outbox.Secret(dbURL), ConnectTimeout: 3 * time.Second})
	if err != nil {
		t.Fatalf("mysql.New: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	if err := store.EnsureSchema(ctx); err != nil {
		t.Fatalf("ensure schema: %v", err)
	}
	for _, ddl := range []string{
		// orders is the business change each transaction makes; its key (writer, n) is how a
		// writer finds out whether a transaction whose COMMIT failed was committed after all.
		`CREATE TABLE orders (writer INT NOT NULL, n INT NOT NULL, k VARCHAR(64) NOT NULL, PRIMARY KEY (writer, n)) ENGINE=InnoDB`,
		// commit_order gives each committed transaction of a contended key its place in the key's
		// commit order, as commitOrderDDL does for PostgreSQL.
		`CREATE TABLE commit_order (k VARCHAR(64) NOT NULL PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB`,
	} {
		if _, err := store.DB().ExecContext(ctx, ddl); err != nil {
			t.Fatalf("business tables: %v", err)
		}
	}
	return &mysqlDatabase{name: name, url: dbURL, store: store}
}

// mysqlWriter is writer on MySQL: the same transactions, events, keys and pace (its embedded
// writer, whose PostgreSQL database is nil), written through store/mysql.
type mysqlWriter struct {
	*writer
	db *mysqlDatabase
}

func (w *mysqlWriter) run(ctx context.Context, stop <-chan struct{}) error {
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
			err = w.failAfterAdd(ctx, n)
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

const insertOrder = "INSERT INTO orders (writer, n, k) VALUES (?, ?, ?)"

// commit writes transaction n until it commits.
func (w *mysqlWriter) commit(ctx context.Context, n int, kind eventKind) error {
	for attempt := 1; ; attempt++ {
		msgs := w.events(n, kind)
		_, err := mysqlstore.Execute(ctx, w.db.store, func(ctx context.Context, tx *sql.Tx) (int, error) {
			_, err := tx.ExecContext(ctx, insertOrder, w.id, n, msgs[0].Key)
			return n, err
		}, msgs...)
		if err == nil {
			w.ledger.committed(msgs, kind, false)
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
			return nil
		}
		w.ledger.retry()
		if !sleep(ctx, time.Duration(min(attempt, 10))*100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// rollBackExplicitly adds events inside a transaction and rolls it back.
func (w *mysqlWriter) rollBackExplicitly(ctx context.Context, n int) error {
	msgs := w.events(n, normal)
	defer w.ledger.ghosts(msgs)
	tx, err := w.db.store.DB().BeginTx(ctx, nil)
	if err != nil {
		return nil // the database is down: nothing was written, nothing to roll back
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, insertOrder, w.id, -n-1, msgs[0].Key); err != nil {
		return nil
	}
	_ = w.db.store.Add(ctx, tx, msgs...)
	return nil
}

// failAfterAdd adds the events, then makes a business change that breaks the orders table's
// primary key, and rolls back on its error, as a service does whose change fails after its
// events were added. (MySQL has no deferred constraint to fail the COMMIT itself.)
func (w *mysqlWriter) failAfterAdd(ctx context.Context, n int) error {
	msgs := w.events(n, normal)
	defer w.ledger.ghosts(msgs)
	tx, err := w.db.store.DB().BeginTx(ctx, nil)
	if err != nil {
		return nil
	}
	defer func() { _ = tx.Rollback() }()
	if err := w.db.store.Add(ctx, tx, msgs...); err != nil {
		return nil
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO orders (writer, n, k) VALUES (?, ?, ?), (?, ?, ?)", w.id, -n-1, msgs[0].Key, w.id, -n-1, msgs[0].Key)
	if err == nil {
		return errors.New("two rows with one primary key were inserted")
	}
	return ctx.Err() // ER_DUP_ENTRY as meant, or the database went down: rolled back either way
}

// exists reports whether transaction n committed, asking until the database answers.
func (w *mysqlWriter) exists(ctx context.Context, n int) (bool, error) {
	for attempt := 1; ; attempt++ {
		var found bool
		err := w.db.store.DB().QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM orders WHERE writer = ? AND n = ?)", w.id, n).Scan(&found)
		if err == nil {
			return found, nil
		}
		if !sleep(ctx, time.Duration(min(attempt, 10))*100*time.Millisecond) {
			return false, ctx.Err()
		}
	}
}

// startMySQLWriters is startWriters on MySQL.
func startMySQLWriters(ctx context.Context, lane string, db *mysqlDatabase, l *ledger, rate float64, withBlocker bool, seed uint64, stop <-chan struct{}) (wait func() error) {
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		w := &mysqlWriter{db: db, writer: &writer{id: i, lane: lane, ledger: l,
			interval: time.Duration(float64(writers) / rate * float64(time.Second)),
			rng:      rand.New(rand.NewPCG(seed, uint64(i))), burstSize: burstEvents, blocker: withBlocker && i == 0}}
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

// mysqlContender is contender on MySQL (its embedded contender, whose PostgreSQL database is
// nil): add one to three events for a key its group shares, wait, take the key's next commit
// position, wait, commit (every rollbackEvery-th transaction rolls back instead).
type mysqlContender struct {
	*contender
	db *mysqlDatabase
}

func (c *mysqlContender) run(ctx context.Context, stop <-chan struct{}) error {
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

func (c *mysqlContender) transaction(ctx context.Context, n int, rollBack bool) error {
	key := c.keys[c.rng.IntN(len(c.keys))]
	types := []string{"ORDER_PLACED", "ORDER_PAID", "ORDER_SHIPPED"}
	msgs := make([]*outbox.Message, 1+c.rng.IntN(3))
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: types[i], Key: key,
			Payload: json.RawMessage(fmt.Sprintf(`{"lane":%q,"cw":%d,"n":%d,"i":%d,"key":%q}`, c.lane, c.id, n, i, key))}
	}
	tx, err := c.db.store.DB().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	// Add makes writers of one key take turns until commit; the waits let a second writer of
	// the key arrive while this transaction is open, at every point of it.
	if err := c.db.store.Add(ctx, tx, msgs...); err != nil {
		return fmt.Errorf("add: %w", err)
	}
	if !sleep(ctx, c.hold()) {
		return ctx.Err()
	}
	// The UPDATE locks the key's row until the transaction ends: the next transaction of the
	// key reads the incremented value only once this one committed.
	if _, err := tx.ExecContext(ctx, "UPDATE commit_order SET n = n + 1 WHERE k = ?", key); err != nil {
		return fmt.Errorf("commit position: %w", err)
	}
	var pos int64
	if err := tx.QueryRowContext(ctx, "SELECT n FROM commit_order WHERE k = ?", key).Scan(&pos); err != nil {
		return fmt.Errorf("commit position: %w", err)
	}
	if !sleep(ctx, c.hold()) {
		return ctx.Err()
	}
	if rollBack {
		if err := tx.Rollback(); err != nil {
			return err
		}
		c.ledger.ghosts(msgs)
		return nil
	}
	if err := tx.Commit(); err != nil {
		// No fault of these scenarios touches the database: a failed COMMIT is a failure.
		return fmt.Errorf("commit: %w", err)
	}
	c.ledger.committedAt(msgs, pos)
	return nil
}

// startMySQLContenders is startContenders on MySQL.
func startMySQLContenders(ctx context.Context, lane string, db *mysqlDatabase, l *ledger, spec contention, rate float64, seed uint64, stop <-chan struct{}) (wait func() error, err error) {
	groups := spec.writers / spec.perKey
	var keys []string
	for k := range spec.keys {
		keys = append(keys, fmt.Sprintf("hot-%03d", k))
	}
	// Every key's row exists before the first transaction, so that taking a position is an
	// UPDATE, whose row lock orders the key's transactions.
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	if _, err := db.store.DB().ExecContext(ctx, "INSERT INTO commit_order (k, n) VALUES "+strings.TrimSuffix(strings.Repeat("(?, 0),", len(keys)), ","), args...); err != nil {
		return nil, fmt.Errorf("commit_order rows: %w", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, spec.writers)
	for i := range spec.writers {
		c := &mysqlContender{db: db, contender: &contender{id: i, lane: lane, ledger: l,
			interval: time.Duration(float64(spec.writers) / rate * float64(time.Second)),
			rng:      rand.New(rand.NewPCG(seed, uint64(i)))}}
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
