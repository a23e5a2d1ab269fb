package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/sqlite"
)

// open returns a store with its schema over a fresh database file in t's temp dir (or over
// cfg's file when set), closed when t ends.
func open(t testing.TB, cfg sqlite.Config) *sqlite.Store {
	t.Helper()
	if cfg.Path == "" && cfg.DSN == "" && cfg.DB == nil {
		cfg.Path = filepath.Join(t.TempDir(), "outbox.db")
	}
	s, err := sqlite.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if err := s.EnsureSchema(context.Background()); err != nil {
		t.Fatalf("ensure schema: %v", err)
	}
	return s
}

// harness builds the suite's view of a store: writes go through Execute and Add on the store's
// own *sql.Tx, Reopen opens a second store over the same file as another process would.
func harness(cfg sqlite.Config) outboxtest.StoreFactory {
	return func(t *testing.T) outboxtest.StoreHarness {
		cfg := cfg
		cfg.Path = filepath.Join(t.TempDir(), "outbox.db")
		s := open(t, cfg)
		return outboxtest.StoreHarness{
			Store: s,
			Add: func(ctx context.Context, msgs ...*outbox.Message) error {
				_, err := sqlite.Execute(ctx, s, func(context.Context, *sql.Tx) (any, error) { return nil, nil }, msgs...)
				return err
			},
			AddRolledBack: func(ctx context.Context, msgs ...*outbox.Message) error {
				tx, err := s.DB().BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				if err := s.Add(ctx, tx, msgs...); err != nil {
					_ = tx.Rollback()
					return err
				}
				return tx.Rollback()
			},
			Reopen: func(t *testing.T) outbox.Store { return open(t, cfg) },
			Corrupt: func(ctx context.Context, id string) error {
				// A control character in the type: SQLite's text column takes it, the outbox does not.
				_, err := s.DB().ExecContext(ctx, `UPDATE outbox SET type = 'BAD' || char(7) WHERE id = ?`, id)
				return err
			},
			AddOpen: func(ctx context.Context, msgs ...*outbox.Message) (func() error, error) {
				tx, err := s.DB().BeginTx(ctx, nil)
				if err != nil {
					return nil, err
				}
				t.Cleanup(func() { _ = tx.Rollback() })
				return tx.Commit, s.Add(ctx, tx, msgs...)
			},
		}
	}
}

func TestStoreSuite(t *testing.T) {
	all := outboxtest.StoreFeatures{Transactions: true, ConcurrentClaims: true, Notifier: true, Inspector: true}
	t.Run("DeleteOnAck", func(t *testing.T) {
		outboxtest.RunStoreSuite(t, harness(sqlite.Config{}), all)
	})
	t.Run("KeepDelivered", func(t *testing.T) {
		f := all
		f.Retention = true
		outboxtest.RunStoreSuite(t, harness(sqlite.Config{KeepDelivered: true}), f)
	})
	// Several connections per store: writers meet SQLite's file lock instead of database/sql's
	// pool, so this runs the suite through BEGIN IMMEDIATE and the busy timeout.
	t.Run("PooledConnections", func(t *testing.T) {
		outboxtest.RunStoreSuite(t, harness(sqlite.Config{MaxOpenConns: 4}), all)
	})
}
