package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/postgres"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
}

// adminPool connects to the test server or skips (fails in CI) when it is unreachable.
func adminPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, testURL())
	if err == nil {
		err = pool.Ping(ctx)
		if err != nil {
			pool.Close()
		}
	}
	if err != nil {
		outboxtest.NeedService(t, "PostgreSQL", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// newSchema creates a schema with a random name, dropped when the test ends.
func newSchema(t testing.TB) string {
	t.Helper()
	admin := adminPool(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "outbox_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// newStore opens a store over a fresh schema with its table created. tweak edits the config.
func newStore(t testing.TB, tweak func(*postgres.Config)) (*postgres.Store, postgres.Config) {
	t.Helper()
	cfg := postgres.Config{URL: testURL(), Schema: newSchema(t)}
	if tweak != nil {
		tweak(&cfg)
	}
	return openStore(t, cfg), cfg
}

// openStore opens a store (closed when the test ends) and ensures its table.
func openStore(t testing.TB, cfg postgres.Config) *postgres.Store {
	t.Helper()
	ctx := context.Background()
	s, err := postgres.New(ctx, cfg)
	if err != nil {
		t.Fatalf("new store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatalf("ensure schema: %v", err)
	}
	return s
}

// add writes msgs in one committed transaction.
func add(t testing.TB, s *postgres.Store, msgs ...*outbox.Message) {
	t.Helper()
	if err := pgx.BeginFunc(context.Background(), s.Pool(), func(tx pgx.Tx) error {
		return s.Add(context.Background(), tx, msgs...)
	}); err != nil {
		t.Fatalf("add: %v", err)
	}
}

func msg(t testing.TB, typ, key string, payload any) *outbox.Message {
	t.Helper()
	m, err := outbox.NewMessage(typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	m.Key = key
	return m
}
