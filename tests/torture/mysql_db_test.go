//go:build torture

package torture

import (
	"context"
	"database/sql"
	"errors"
	"strings"
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

func (db *mysqlDatabase) inspector() outbox.Inspector { return db.store }

func (db *mysqlDatabase) row(ctx context.Context, id string) (r outboxRow, err error) {
	err = db.store.DB().QueryRowContext(ctx, "SELECT status, COALESCE(lease_owner, ''), attempts, COALESCE(last_error, '') FROM outbox WHERE id = ?", id).
		Scan(&r.status, &r.owner, &r.attempts, &r.lastErr)
	return r, err
}

const insertOrder = "INSERT INTO orders (writer, n, k) VALUES (?, ?, ?)"

func (db *mysqlDatabase) commitOrder(ctx context.Context, writer, n int, key string, msgs []*outbox.Message) error {
	_, err := mysqlstore.Execute(ctx, db.store, func(ctx context.Context, tx *sql.Tx) (int, error) {
		_, err := tx.ExecContext(ctx, insertOrder, writer, n, key)
		return n, err
	}, msgs...)
	return err
}

func (db *mysqlDatabase) rollBackOrder(ctx context.Context, writer, n int, key string, msgs []*outbox.Message) {
	tx, err := db.store.DB().BeginTx(ctx, nil)
	if err != nil {
		return // the database is down: nothing was written, nothing to roll back
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, insertOrder, writer, n, key); err != nil {
		return
	}
	_ = db.store.Add(ctx, tx, msgs...)
}

// failAfterAdd adds the events, then makes a business change that breaks the orders table's
// primary key, and rolls back on its error, as a service does whose change fails after its
// events were added. (MySQL has no deferred constraint to fail the COMMIT itself.)
func (db *mysqlDatabase) failAfterAdd(ctx context.Context, w *writer, n int) error {
	msgs := w.events(n, normal)
	defer w.ledger.ghosts(msgs)
	tx, err := db.store.DB().BeginTx(ctx, nil)
	if err != nil {
		return nil
	}
	defer func() { _ = tx.Rollback() }()
	if err := db.store.Add(ctx, tx, msgs...); err != nil {
		return nil
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO orders (writer, n, k) VALUES (?, ?, ?), (?, ?, ?)", w.id, -n-1, msgs[0].Key, w.id, -n-1, msgs[0].Key)
	if err == nil {
		return errors.New("two rows with one primary key were inserted")
	}
	return ctx.Err() // ER_DUP_ENTRY as meant, or the database went down: rolled back either way
}

func (db *mysqlDatabase) orderExists(ctx context.Context, writer, n int) (found bool, err error) {
	err = db.store.DB().QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM orders WHERE writer = ? AND n = ?)", writer, n).Scan(&found)
	return found, err
}

func (db *mysqlDatabase) createPositions(ctx context.Context, keys []string) error {
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	_, err := db.store.DB().ExecContext(ctx, "INSERT INTO commit_order (k, n) VALUES "+strings.TrimSuffix(strings.Repeat("(?, 0),", len(keys)), ","), args...)
	return err
}

func (db *mysqlDatabase) beginContended(ctx context.Context) (contendedTx, error) {
	tx, err := db.store.DB().BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &mysqlContendedTx{db: db, tx: tx}, nil
}

// mysqlContendedTx is a contended writer's transaction on MySQL.
type mysqlContendedTx struct {
	db *mysqlDatabase
	tx *sql.Tx
}

func (c *mysqlContendedTx) add(ctx context.Context, msgs ...*outbox.Message) error {
	return c.db.store.Add(ctx, c.tx, msgs...)
}

// takePosition updates, then reads: MySQL's UPDATE has no RETURNING. The UPDATE's row lock
// holds until the transaction ends, so the next transaction of the key reads the incremented
// value only once this one committed.
func (c *mysqlContendedTx) takePosition(ctx context.Context, key string) (pos int64, err error) {
	if _, err := c.tx.ExecContext(ctx, "UPDATE commit_order SET n = n + 1 WHERE k = ?", key); err != nil {
		return 0, err
	}
	err = c.tx.QueryRowContext(ctx, "SELECT n FROM commit_order WHERE k = ?", key).Scan(&pos)
	return pos, err
}

func (c *mysqlContendedTx) commit(context.Context) error   { return c.tx.Commit() }
func (c *mysqlContendedTx) rollback(context.Context) error { return c.tx.Rollback() }
