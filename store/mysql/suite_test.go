package mysql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
)

// openTable opens a store over table with cfg, skipping the test when MariaDB is unreachable
// (failing it under CI); it is closed when t ends.
func openTable(t *testing.T, cfg Config, table string) *Store {
	t.Helper()
	cfg.URL, cfg.Table = outbox.Secret(testURL()), table
	s, err := New(context.Background(), cfg)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("MariaDB: %v", err)
		}
		t.Skipf("MariaDB not reachable (scripts/services/mariadb start): %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// harness builds the suite's view of a store over a fresh table: writes go through Execute and
// Add, Reopen opens a second store over the table as another relay process would.
func harness(cfg Config) outboxtest.StoreFactory {
	return func(t *testing.T) outboxtest.StoreHarness {
		ctx := context.Background()
		var b [6]byte
		_, _ = rand.Read(b[:])
		table := "outbox_" + hex.EncodeToString(b[:])
		s := openTable(t, cfg, table)
		if err := s.EnsureSchema(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = s.DB().ExecContext(ctx, "DROP TABLE IF EXISTS "+s.table+", "+s.keys+", "+quote(s.cfg.Table+"_schema"))
		})
		return outboxtest.StoreHarness{
			Store: s,
			Add: func(ctx context.Context, msgs ...*outbox.Message) error {
				_, err := Execute(ctx, s, func(context.Context, *sql.Tx) (any, error) { return nil, nil }, msgs...)
				return err
			},
			AddRolledBack: func(ctx context.Context, msgs ...*outbox.Message) error {
				tx, err := s.DB().BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				return s.Add(ctx, tx, msgs...)
			},
			AddOpen: func(ctx context.Context, msgs ...*outbox.Message) (func() error, error) {
				tx, err := s.DB().BeginTx(ctx, nil)
				if err != nil {
					return nil, err
				}
				t.Cleanup(func() { _ = tx.Rollback() })
				if err := s.Add(ctx, tx, msgs...); err != nil {
					return nil, err
				}
				return func() error {
					if err := tx.Commit(); err != nil {
						return err
					}
					s.Notify()
					return nil
				}, nil
			},
			Reopen: func(t *testing.T) outbox.Store { return openTable(t, cfg, table) },
			Corrupt: func(ctx context.Context, id string) error {
				_, err := s.DB().ExecContext(ctx, "UPDATE "+s.table+" SET type = CONCAT(type, CHAR(7)) WHERE id = ?", id)
				return err
			},
		}
	}
}

func TestStoreSuite(t *testing.T) {
	f := outboxtest.StoreFeatures{Transactions: true, ConcurrentClaims: true, Notifier: true, Inspector: true}
	outboxtest.RunStoreSuite(t, harness(Config{}), f)
}

func TestStoreSuiteKeepDelivered(t *testing.T) {
	f := outboxtest.StoreFeatures{Transactions: true, ConcurrentClaims: true, Notifier: true, Inspector: true, Retention: true}
	outboxtest.RunStoreSuite(t, harness(Config{KeepDelivered: true}), f)
}
