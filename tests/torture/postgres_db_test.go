//go:build torture

package torture

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

// database is one lane's schema: the outbox table and the business tables next to it.
type database struct {
	schema string
	store  *postgres.Store // the writers' store (the relays open their own, in their processes)
	admin  *pgxpool.Pool
	// slot is the WAL mode's replication slot (and publication); "" in table mode.
	slot string
}

// newDatabase creates a lane's schema, and in WAL mode its slot and publication, which the
// test's cleanup drops again (after the relays stopped, before the schema goes): a slot left
// behind would keep the server's WAL forever.
func newDatabase(t *testing.T, admin *pgxpool.Pool, url, schema string, wal bool) *database {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	cfg := postgres.Config{URL: url, Schema: schema, MaxConns: writers + 2, ConnectTimeout: 3 * time.Second}
	if wal {
		dropStaleSlots(t, admin, schema[strings.LastIndex(schema, "_")+1:])
		cfg.WAL = &postgres.WALConfig{}
	}
	store, err := postgres.New(ctx, cfg)
	if err != nil {
		t.Fatalf("postgres.New: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	db := &database{schema: schema, store: store, admin: admin}
	if wal {
		st, err := store.SlotStatus(ctx)
		if err != nil {
			t.Fatalf("slot status: %v", err)
		}
		db.slot = st.Slot
		t.Cleanup(func() { db.dropSlot(t) }) // runs before the store closes
	}
	if err := store.EnsureSchema(ctx); err != nil {
		t.Fatalf("ensure schema: %v", err)
	}
	for _, ddl := range []string{
		// orders is the business change each transaction makes; its key (writer, n) is how a
		// writer finds out whether a transaction whose COMMIT failed was committed after all.
		`CREATE TABLE %s.orders (writer int NOT NULL, n int NOT NULL, key text NOT NULL, PRIMARY KEY (writer, n))`,
		// probe's deferred unique constraint makes chosen transactions fail at COMMIT, after
		// their events were added: the rollback nobody sees coming.
		`CREATE TABLE %s.probe (token bigint NOT NULL, CONSTRAINT probe_token UNIQUE (token) DEFERRABLE INITIALLY DEFERRED)`,
		commitOrderDDL,
	} {
		if _, err := admin.Exec(ctx, fmt.Sprintf(ddl, pgx.Identifier{schema}.Sanitize())); err != nil {
			t.Fatalf("business tables: %v", err)
		}
	}
	return db
}

func (db *database) table(name string) string { return pgx.Identifier{db.schema, name}.Sanitize() }

func (db *database) inspector() outbox.Inspector { return db.store }

func (db *database) row(ctx context.Context, id string) (r outboxRow, err error) {
	err = db.admin.QueryRow(ctx, "SELECT status, coalesce(lease_owner, ''), attempts, coalesce(last_error, '') FROM "+db.table("outbox")+" WHERE id = $1", id).
		Scan(&r.status, &r.owner, &r.attempts, &r.lastErr)
	return r, err
}

func (db *database) insertOrder(ctx context.Context, tx pgx.Tx, writer, n int, key string) error {
	_, err := tx.Exec(ctx, "INSERT INTO "+db.table("orders")+" (writer, n, key) VALUES ($1, $2, $3)", writer, n, key)
	return err
}

func (db *database) commitOrder(ctx context.Context, writer, n int, key string, msgs []*outbox.Message) error {
	_, err := postgres.Execute(ctx, db.store, func(ctx context.Context, tx pgx.Tx) (int, error) {
		return n, db.insertOrder(ctx, tx, writer, n, key)
	}, msgs...)
	return err
}

func (db *database) rollBackOrder(ctx context.Context, writer, n int, key string, msgs []*outbox.Message) {
	tx, err := db.store.Pool().Begin(ctx)
	if err != nil {
		return // the database is down: nothing was written, nothing to roll back
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := db.insertOrder(ctx, tx, writer, n, key); err != nil {
		return
	}
	_ = db.store.Add(ctx, tx, msgs...)
}

// failAfterAdd runs Execute with a business change that breaks a deferred constraint, so the
// events are added and the COMMIT fails.
func (db *database) failAfterAdd(ctx context.Context, w *writer, n int) error {
	msgs := w.events(n, normal)
	token := int64(w.id)<<32 | int64(n)
	_, err := postgres.Execute(ctx, db.store, func(ctx context.Context, tx pgx.Tx) (int, error) {
		if err := db.insertOrder(ctx, tx, w.id, -n-1, msgs[0].Key); err != nil {
			return 0, err
		}
		_, err := tx.Exec(ctx, "INSERT INTO "+db.table("probe")+" (token) VALUES ($1), ($1)", token)
		return 0, err
	}, msgs...)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return errors.New("a transaction breaking a deferred unique constraint committed")
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		w.ledger.ghosts(msgs)
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	// Another failure (the database went down): whatever was added is rolled back all the same,
	// unless the business row proves otherwise, which would be a bug of this test.
	done, cerr := w.exists(ctx, -n-1)
	if cerr != nil {
		return cerr
	}
	if done {
		return fmt.Errorf("transaction %d committed although its deferred constraint failed (%v)", n, err)
	}
	w.ledger.ghosts(msgs)
	return nil
}

func (db *database) orderExists(ctx context.Context, writer, n int) (found bool, err error) {
	err = db.store.Pool().QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+db.table("orders")+" WHERE writer = $1 AND n = $2)", writer, n).Scan(&found)
	return found, err
}

func (db *database) createPositions(ctx context.Context, keys []string) error {
	_, err := db.admin.Exec(ctx, "INSERT INTO "+db.table("commit_order")+" (key, n) SELECT unnest($1::text[]), 0", keys)
	return err
}

func (db *database) beginContended(ctx context.Context) (contendedTx, error) {
	tx, err := db.store.Pool().Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &postgresContendedTx{db: db, tx: tx}, nil
}

// postgresContendedTx is a contended writer's transaction on PostgreSQL.
type postgresContendedTx struct {
	db *database
	tx pgx.Tx
}

func (c *postgresContendedTx) add(ctx context.Context, msgs ...*outbox.Message) error {
	return c.db.store.Add(ctx, c.tx, msgs...)
}

func (c *postgresContendedTx) takePosition(ctx context.Context, key string) (pos int64, err error) {
	err = c.tx.QueryRow(ctx, "UPDATE "+c.db.table("commit_order")+" SET n = n + 1 WHERE key = $1 RETURNING n", key).Scan(&pos)
	return pos, err
}

func (c *postgresContendedTx) commit(ctx context.Context) error   { return c.tx.Commit(ctx) }
func (c *postgresContendedTx) rollback(ctx context.Context) error { return c.tx.Rollback(ctx) }
