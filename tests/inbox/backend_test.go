package inbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite" // the "sqlite" driver of the consumer's database

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/postgres"
	pginbox "github.com/txoutbox/outbox/store/postgres/inbox"
	"github.com/txoutbox/outbox/store/sqlite"
	sqliteinbox "github.com/txoutbox/outbox/store/sqlite/inbox"
)

// handleFunc is the consumer's processing of one delivery: in one transaction, the inbox record
// and the business effect (one row in effects naming the message), then hook, inside the
// transaction, where the test injects its faults.
type handleFunc func(ctx context.Context, consumer string, m *outbox.Message, hook func(ctx context.Context) error) (dup bool, err error)

// consumerSide is the consumer's database: its inbox and its business table.
type consumerSide struct {
	handle  handleFunc
	effects func(ctx context.Context) (map[string]int, error)
	close   func()
}

// database is one database kind on both sides: the producer's outbox and the consumer's inbox.
type database struct {
	name    string
	store   outbox.Store
	inspect outbox.Inspector
	// write stores one event in a business transaction, committed or rolled back.
	write    func(ctx context.Context, m *outbox.Message, commit bool) error
	consumer consumerSide
	// child is the environment of a consumer process over the same consumer database.
	child []string
	// schema holds the PostgreSQL outbox table; empty for SQLite.
	schema string
}

var errRollback = errors.New("the writer rolls back")

// payloadN reads the event's sequence number from its payload {"n":...}.
func payloadN(m *outbox.Message) (int, error) {
	var p struct{ N *int }
	if err := json.Unmarshal(m.Payload, &p); err != nil || p.N == nil {
		return 0, fmt.Errorf("message %s: payload %s has no n", m.ID, m.Payload)
	}
	return *p.N, nil
}

func postgresBackend(t *testing.T) *database {
	t.Helper()
	ctx := testCtx(t)
	pool, err := pgxpool.New(ctx, postgresURL())
	if err == nil {
		if err = pool.Ping(ctx); err != nil {
			pool.Close()
		}
	}
	if err != nil {
		outboxtest.NeedService(t, "PostgreSQL at "+postgresURL(), err)
	}
	t.Cleanup(pool.Close)
	schema := "inbox_e2e_" + randomSuffix()
	t.Cleanup(func() {
		for _, s := range []string{schema, schema + "_c"} {
			if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
				t.Errorf("drop schema %s: %v", s, err)
			}
		}
	})
	store, err := postgres.New(ctx, postgres.Config{Pool: pool, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	if err := store.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	cs, err := openPostgresConsumer(ctx, postgresURL(), schema+"_c", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cs.close)
	return &database{
		name: "postgres", store: store, inspect: store, consumer: cs, schema: schema,
		write: func(ctx context.Context, m *outbox.Message, commit bool) error {
			_, err := postgres.Execute(ctx, store, func(ctx context.Context, tx pgx.Tx) (struct{}, error) {
				if commit {
					return struct{}{}, nil
				}
				if err := store.Add(ctx, tx, m); err != nil {
					return struct{}{}, err
				}
				return struct{}{}, errRollback
			}, commitOnly(m, commit)...)
			return err
		},
		child: []string{childEnv + "=postgres", childDSNEnv + "=" + postgresURL(), childSchemaEnv + "=" + schema + "_c"},
	}
}

// commitOnly is the message Execute writes itself: only when the write commits (a rolled-back
// write adds its message inside fn, so that it is written and then rolled back).
func commitOnly(m *outbox.Message, commit bool) []*outbox.Message {
	if commit {
		return []*outbox.Message{m}
	}
	return nil
}

// openPostgresConsumer opens the consumer's own pool, inbox and effects table in schema.
func openPostgresConsumer(ctx context.Context, url, schema string, create bool) (consumerSide, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return consumerSide{}, err
	}
	in, err := pginbox.New(pool, pginbox.Config{Schema: schema})
	if err != nil {
		pool.Close()
		return consumerSide{}, err
	}
	effects := pgx.Identifier{schema, "effects"}.Sanitize()
	if create {
		if err := in.EnsureSchema(ctx); err != nil {
			pool.Close()
			return consumerSide{}, err
		}
		if _, err := pool.Exec(ctx, "CREATE TABLE "+effects+" (message_id text NOT NULL, n int NOT NULL)"); err != nil {
			pool.Close()
			return consumerSide{}, err
		}
	}
	return consumerSide{
		handle: func(ctx context.Context, consumer string, m *outbox.Message, hook func(context.Context) error) (bool, error) {
			return in.Handle(ctx, consumer, m, func(ctx context.Context, tx pgx.Tx) error {
				n, err := payloadN(m)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "INSERT INTO "+effects+" VALUES ($1, $2)", m.ID, n); err != nil {
					return err
				}
				return hook(ctx)
			})
		},
		effects: func(ctx context.Context) (map[string]int, error) {
			rows, err := pool.Query(ctx, "SELECT message_id, count(*) FROM "+effects+" GROUP BY message_id")
			if err != nil {
				return nil, err
			}
			out := map[string]int{}
			var id string
			var n int
			_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error { out[id] = n; return nil })
			return out, err
		},
		close: pool.Close,
	}, nil
}

func sqliteBackend(t *testing.T) *database {
	t.Helper()
	ctx := testCtx(t)
	dir := t.TempDir()
	store, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(dir, "producer.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	if err := store.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "consumer.db")
	cs, err := openSQLiteConsumer(ctx, path, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cs.close)
	return &database{
		name: "sqlite", store: store, inspect: store, consumer: cs,
		write: func(ctx context.Context, m *outbox.Message, commit bool) error {
			_, err := sqlite.Execute(ctx, store, func(ctx context.Context, tx *sql.Tx) (struct{}, error) {
				if commit {
					return struct{}{}, nil
				}
				if err := store.Add(ctx, tx, m); err != nil {
					return struct{}{}, err
				}
				return struct{}{}, errRollback
			}, commitOnly(m, commit)...)
			return err
		},
		child: []string{childEnv + "=sqlite", childDSNEnv + "=" + path},
	}
}

// openSQLiteConsumer opens the consumer's database file (one connection, as a SQLite service
// would; other processes wait within the busy timeout), its inbox and its effects table.
func openSQLiteConsumer(ctx context.Context, path string, create bool) (consumerSide, error) {
	db, err := sql.Open("sqlite", sqlite.DSN(path, 20*time.Second))
	if err != nil {
		return consumerSide{}, err
	}
	db.SetMaxOpenConns(1)
	in, err := sqliteinbox.New(db, sqliteinbox.Config{})
	if err != nil {
		_ = db.Close()
		return consumerSide{}, err
	}
	if create {
		if err := in.EnsureSchema(ctx); err != nil {
			_ = db.Close()
			return consumerSide{}, err
		}
		if _, err := db.ExecContext(ctx, "CREATE TABLE effects (message_id TEXT NOT NULL, n INTEGER NOT NULL)"); err != nil {
			_ = db.Close()
			return consumerSide{}, err
		}
	}
	return consumerSide{
		handle: func(ctx context.Context, consumer string, m *outbox.Message, hook func(context.Context) error) (bool, error) {
			return in.Handle(ctx, consumer, m, func(ctx context.Context, tx *sql.Tx) error {
				n, err := payloadN(m)
				if err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, "INSERT INTO effects VALUES (?, ?)", m.ID, n); err != nil {
					return err
				}
				return hook(ctx)
			})
		},
		effects: func(ctx context.Context) (map[string]int, error) {
			rows, err := db.QueryContext(ctx, "SELECT message_id, count(*) FROM effects GROUP BY message_id")
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			out := map[string]int{}
			for rows.Next() {
				var id string
				var n int
				if err := rows.Scan(&id, &n); err != nil {
					return nil, err
				}
				out[id] = n
			}
			return out, rows.Err()
		},
		close: func() { _ = db.Close() },
	}, nil
}
