package inbox_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/mysql"
	"github.com/txoutbox/outbox/store/mysql/inbox"
)

func testURL() string {
	if u := os.Getenv("OUTBOX_TEST_MYSQL_URL"); u != "" {
		return u
	}
	return "mysql://outbox:outbox@127.0.0.1:3306/outbox_test"
}

// openDB returns a database handle from a store over the test database, skipping the test when
// MariaDB is unreachable (failing it under CI).
func openDB(t *testing.T) *sql.DB {
	t.Helper()
	s, err := mysql.New(context.Background(), mysql.Config{URL: outbox.Secret(testURL())})
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("MariaDB: %v", err)
		}
		t.Skipf("MariaDB not reachable (scripts/services/mariadb start): %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s.DB()
}

func harness(t *testing.T) outboxtest.InboxHarness {
	ctx := context.Background()
	db := openDB(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	table, effects := "inbox_"+hex.EncodeToString(b[:]), "effects_"+hex.EncodeToString(b[:])
	in, err := inbox.New(db, inbox.Config{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE " + effects + " (consumer VARCHAR(255) NOT NULL, message_id VARCHAR(255) NOT NULL) ENGINE=InnoDB"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.ExecContext(ctx, "DROP TABLE IF EXISTS "+table+", "+effects) })
	return outboxtest.InboxHarness{
		Handle: func(ctx context.Context, consumer string, msg *outbox.Message, fn outboxtest.InboxFunc) (bool, error) {
			var handler func(context.Context, *sql.Tx) error
			if fn != nil {
				handler = func(ctx context.Context, tx *sql.Tx) error {
					return fn(ctx, func(ctx context.Context) error {
						_, err := tx.ExecContext(ctx, "INSERT INTO "+effects+" VALUES (?, ?)", consumer, msg.ID)
						return err
					})
				}
			}
			return in.Handle(ctx, consumer, msg, handler)
		},
		Effects: func(ctx context.Context, consumer, id string) (n int, err error) {
			err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+effects+" WHERE consumer = ? AND message_id = ?", consumer, id).Scan(&n)
			return n, err
		},
		Recorded: in.Processed,
		Age: func(ctx context.Context, consumer, id string, age time.Duration) error {
			res, err := db.ExecContext(ctx, "UPDATE "+table+" SET processed_at = processed_at - INTERVAL ? MICROSECOND WHERE consumer = ? AND message_id = ?",
				age.Microseconds(), consumer, id)
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

func TestInboxSuite(t *testing.T) {
	outboxtest.RunInboxSuite(t, harness, outboxtest.InboxFeatures{Transactions: true, Concurrent: true, Retention: true})
}

func TestConfig(t *testing.T) {
	for _, table := range []string{"bad-name", "x`; drop table y; --", strings.Repeat("t", 65)} {
		_, err := inbox.New(&sql.DB{}, inbox.Config{Table: table})
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), "Table") {
			t.Errorf("New(Table %q) = %v, want a config error naming Table", table, err)
		}
	}
	if _, err := inbox.New(nil, inbox.Config{}); err == nil || !strings.Contains(err.Error(), "mysql inbox: new: invalid argument: db is nil") {
		t.Errorf("New(nil) = %v", err)
	}
	db := openDB(t)
	ddl, err := inbox.SchemaSQL("inbox_schema_check")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec("DROP TABLE IF EXISTS inbox_schema_check") })
	for range 2 { // idempotent
		if _, err := db.Exec(ddl); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMissingTable(t *testing.T) {
	in, err := inbox.New(openDB(t), inbox.Config{Table: "inbox_never_created"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = in.Handle(context.Background(), "c", &outbox.Message{ID: "m1"}, func(context.Context, *sql.Tx) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "EnsureSchema") {
		t.Fatalf("Handle on a missing table = %v", err)
	}
}
