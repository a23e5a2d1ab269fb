package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/postgres/inbox"
)

// harness is an inbox over a fresh schema, with an effects table its handlers write to.
type harness struct {
	pool   *pgxpool.Pool
	schema string
	in     *inbox.Inbox
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	pool := testPool(t)
	schema := newSchema(t, pool)
	in, err := inbox.New(pool, inbox.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := in.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "CREATE TABLE "+pgx.Identifier{schema, "effects"}.Sanitize()+" (consumer text NOT NULL, message_id text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return &harness{pool: pool, schema: schema, in: in}
}

func (h *harness) effects() string { return pgx.Identifier{h.schema, "effects"}.Sanitize() }
func (h *harness) inbox() string   { return pgx.Identifier{h.schema, inbox.DefaultTable}.Sanitize() }

func (h *harness) suite(t *testing.T, viaSQL *sql.DB) outboxtest.InboxHarness {
	return outboxtest.InboxHarness{
		Handle: func(ctx context.Context, consumer string, msg *outbox.Message, fn outboxtest.InboxFunc) (bool, error) {
			if viaSQL != nil {
				var handler func(context.Context, *sql.Tx) error
				if fn != nil {
					handler = func(ctx context.Context, tx *sql.Tx) error {
						return fn(ctx, func(ctx context.Context) error {
							_, err := tx.ExecContext(ctx, "INSERT INTO "+h.effects()+" VALUES ($1, $2)", consumer, msg.ID)
							return err
						})
					}
				}
				return h.in.HandleSQL(ctx, viaSQL, consumer, msg, handler)
			}
			var handler func(context.Context, pgx.Tx) error
			if fn != nil {
				handler = func(ctx context.Context, tx pgx.Tx) error {
					return fn(ctx, func(ctx context.Context) error {
						_, err := tx.Exec(ctx, "INSERT INTO "+h.effects()+" VALUES ($1, $2)", consumer, msg.ID)
						return err
					})
				}
			}
			return h.in.Handle(ctx, consumer, msg, handler)
		},
		Effects: func(ctx context.Context, consumer, id string) (n int, err error) {
			err = h.pool.QueryRow(ctx, "SELECT count(*) FROM "+h.effects()+" WHERE consumer = $1 AND message_id = $2", consumer, id).Scan(&n)
			return n, err
		},
		Recorded: func(ctx context.Context, consumer, id string) (bool, error) {
			return h.in.Processed(ctx, consumer, id)
		},
		Age: func(ctx context.Context, consumer, id string, age time.Duration) error {
			tag, err := h.pool.Exec(ctx, "UPDATE "+h.inbox()+" SET processed_at = now() - $3::bigint * interval '1 microsecond' WHERE consumer = $1 AND message_id = $2",
				consumer, id, age.Microseconds())
			if err == nil && tag.RowsAffected() != 1 {
				err = fmt.Errorf("no record of %s for %s", id, consumer)
			}
			return err
		},
		Prune: h.in.DeleteOlderThan,
		WaitBlocked: func(ctx context.Context) error {
			// A session of this test waiting for a lock on the inbox table: the second delivery
			// blocked on the first one's uncommitted record.
			for {
				var n int
				err := h.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
					WHERE wait_event_type = 'Lock' AND datname = current_database() AND strpos(query, $1) > 0`, h.schema).Scan(&n)
				if err != nil {
					return err
				}
				if n > 0 {
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(2 * time.Millisecond):
				}
			}
		},
	}
}

var features = outboxtest.InboxFeatures{Transactions: true, Concurrent: true, Retention: true}

func TestInboxSuite(t *testing.T) {
	outboxtest.RunInboxSuite(t, func(t *testing.T) outboxtest.InboxHarness { return newHarness(t).suite(t, nil) }, features)
}

// TestInboxSuiteSQL runs the same contract through HandleSQL on database/sql (pgx's stdlib).
func TestInboxSuiteSQL(t *testing.T) {
	outboxtest.RunInboxSuite(t, func(t *testing.T) outboxtest.InboxHarness {
		h := newHarness(t)
		db := stdlib.OpenDBFromPool(h.pool)
		t.Cleanup(func() { _ = db.Close() })
		return h.suite(t, db)
	}, features)
}

func TestConfig(t *testing.T) {
	pool := testPool(t)
	for _, c := range []struct {
		cfg  inbox.Config
		want string
	}{
		{inbox.Config{Table: "bad-name"}, "Table"},
		{inbox.Config{Schema: `x"; drop table y; --`}, "Schema"},
		{inbox.Config{Table: strings.Repeat("t", 64)}, "Table"},
	} {
		_, err := inbox.New(pool, c.cfg)
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%v) = %v, want a config error naming %s", c.cfg, err, c.want)
		}
	}
	if _, err := inbox.New(nil, inbox.Config{}); err == nil || !strings.Contains(err.Error(), "pool") {
		t.Errorf("New(nil pool) = %v", err)
	}
	if _, err := inbox.SchemaSQL("public", "1bad"); err == nil {
		t.Error("SchemaSQL accepted a bad table name")
	}
}

func TestEnsureSchemaConcurrent(t *testing.T) {
	pool := testPool(t)
	schema := newSchema(t, pool)
	in, err := inbox.New(pool, inbox.Config{Schema: schema + "_new", Table: "processed"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema + "_new"}.Sanitize()+" CASCADE")
	})
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- in.EnsureSchema(context.Background()) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent EnsureSchema: %v", err)
		}
	}
	ddl, err := inbox.SchemaSQL(schema+"_new", "processed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(context.Background(), ddl); err != nil {
		t.Fatalf("SchemaSQL is not idempotent after EnsureSchema: %v", err)
	}
}

func TestHandleSQLNilDB(t *testing.T) {
	h := newHarness(t)
	_, err := h.in.HandleSQL(context.Background(), nil, "billing", &outbox.Message{ID: "x"}, func(context.Context, *sql.Tx) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "postgres inbox: handle: invalid argument: db is nil") {
		t.Fatalf("HandleSQL(nil db) = %v", err)
	}
}
