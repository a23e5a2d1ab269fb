package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/sqlite/inbox"
)

// openDB opens a fresh database file with conns connections and the settings sqlite.DSN gives
// (a busy timeout, WAL, BEGIN IMMEDIATE).
func openDB(t *testing.T, conns int) *sql.DB {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "inbox.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(conns)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func newInbox(t *testing.T, db *sql.DB) *inbox.Inbox {
	t.Helper()
	in, err := inbox.New(db, inbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.EnsureSchema(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE effects (consumer TEXT NOT NULL, message_id TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return in
}

func harness(t *testing.T, conns int) outboxtest.InboxHarness {
	db := openDB(t, conns)
	in := newInbox(t, db)
	return outboxtest.InboxHarness{
		Handle: func(ctx context.Context, consumer string, msg *outbox.Message, fn outboxtest.InboxFunc) (bool, error) {
			var handler func(context.Context, *sql.Tx) error
			if fn != nil {
				handler = func(ctx context.Context, tx *sql.Tx) error {
					return fn(ctx, func(ctx context.Context) error {
						_, err := tx.ExecContext(ctx, "INSERT INTO effects VALUES (?, ?)", consumer, msg.ID)
						return err
					})
				}
			}
			return in.Handle(ctx, consumer, msg, handler)
		},
		Effects: func(ctx context.Context, consumer, id string) (n int, err error) {
			err = db.QueryRowContext(ctx, "SELECT count(*) FROM effects WHERE consumer = ? AND message_id = ?", consumer, id).Scan(&n)
			return n, err
		},
		Recorded: in.Processed,
		Age: func(ctx context.Context, consumer, id string, age time.Duration) error {
			res, err := db.ExecContext(ctx, "UPDATE inbox SET processed_at = processed_at - ? WHERE consumer = ? AND message_id = ?", age.Milliseconds(), consumer, id)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return fmt.Errorf("no record of %s for %s", id, consumer)
			}
			return nil
		},
		Prune: in.DeleteOlderThan,
	}
}

var features = outboxtest.InboxFeatures{Transactions: true, Concurrent: true, Retention: true}

// One connection: concurrent deliveries queue in database/sql, as with a store's own DB.
func TestInboxSuite(t *testing.T) {
	outboxtest.RunInboxSuite(t, func(t *testing.T) outboxtest.InboxHarness { return harness(t, 1) }, features)
}

// Several connections: concurrent deliveries meet at SQLite's write lock and its busy timeout.
func TestInboxSuiteConns(t *testing.T) {
	outboxtest.RunInboxSuite(t, func(t *testing.T) outboxtest.InboxHarness { return harness(t, 4) }, features)
}

func TestConfig(t *testing.T) {
	db := openDB(t, 1)
	for _, table := range []string{"bad-name", `x"; drop table y; --`, "sqlite_inbox", strings.Repeat("t", 64)} {
		_, err := inbox.New(db, inbox.Config{Table: table})
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), "Table") {
			t.Errorf("New(Table %q) = %v, want a config error naming Table", table, err)
		}
	}
	if _, err := inbox.New(nil, inbox.Config{}); err == nil || !strings.Contains(err.Error(), "sqlite inbox: new: invalid argument: db is nil") {
		t.Errorf("New(nil) = %v", err)
	}
	ddl, err := inbox.SchemaSQL("processed")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if _, err := db.Exec(ddl); err != nil {
			t.Fatal(err)
		}
	}
}
