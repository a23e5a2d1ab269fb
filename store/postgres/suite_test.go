package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/postgres"
)

// harness returns a suite factory; mode is the pool's query exec mode (0 for pgx's default).
func harness(mode pgx.QueryExecMode, keepDelivered bool) outboxtest.StoreFactory {
	return harnessWith(func(c *postgres.Config) {
		c.QueryExecMode = mode
		c.KeepDelivered = keepDelivered
	})
}

func harnessWith(tweak func(*postgres.Config)) outboxtest.StoreFactory {
	return func(t *testing.T) outboxtest.StoreHarness {
		s, cfg := newStore(t, tweak)
		return storeHarness(t, s, cfg)
	}
}

// storeHarness gives the suite its ways into s. Writes return once they are claimable: in WAL
// mode after the reader streamed them (Sync, a no-op in table mode), since the suite claims
// right after writing.
func storeHarness(t *testing.T, s *postgres.Store, cfg postgres.Config) outboxtest.StoreHarness {
	write := func(ctx context.Context, commit bool, msgs []*outbox.Message) error {
		tx, err := s.Pool().Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		if err := s.Add(ctx, tx, msgs...); err != nil {
			return err
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			return err
		}
		return s.Sync(ctx)
	}
	h := outboxtest.StoreHarness{
		Store:         s,
		Add:           func(ctx context.Context, msgs ...*outbox.Message) error { return write(ctx, true, msgs) },
		AddRolledBack: func(ctx context.Context, msgs ...*outbox.Message) error { return write(ctx, false, msgs) },
		Reopen:        func(t *testing.T) outbox.Store { return openStore(t, cfg) },
		AddOpen: func(ctx context.Context, msgs ...*outbox.Message) (func() error, error) {
			tx, err := s.Pool().Begin(ctx)
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
			commit := func() error {
				if err := tx.Commit(ctx); err != nil {
					return err
				}
				return s.Sync(ctx)
			}
			return commit, s.Add(ctx, tx, msgs...)
		},
	}
	// The next process after a clean stop: in WAL mode it takes the slot once the closed
	// reader's server process has let go of it, and Sync returns once it has streamed.
	h.Restart = func(t *testing.T) outbox.Store {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		next := openStore(t, cfg)
		syncStore(t, next)
		return next
	}
	if cfg.WAL == nil { // a message in the WAL cannot be damaged after it is written
		h.Corrupt = func(ctx context.Context, id string) error {
			// Headers that are not a JSON object of strings: what a hand-made fix may write.
			_, err := s.Pool().Exec(ctx, "UPDATE "+s.Table()+` SET headers = '{"n": 1}' WHERE id = $1`, id)
			return err
		}
	}
	return h
}

var allFeatures = outboxtest.StoreFeatures{
	Transactions:     true,
	ConcurrentClaims: true,
	Notifier:         true,
	Inspector:        true,
	Retention:        true,
}

// The suite runs twice: with prepared statements (pgx's default) and with the simple protocol
// that PgBouncer's transaction pooling requires.
func TestStoreSuite(t *testing.T) {
	t.Run("Default", func(t *testing.T) { outboxtest.RunStoreSuite(t, harness(0, true), allFeatures) })
	t.Run("SimpleProtocol", func(t *testing.T) {
		outboxtest.RunStoreSuite(t, harness(pgx.QueryExecModeSimpleProtocol, true), allFeatures)
	})
}

// Delete-on-ack mode has no Retention; everything else holds.
func TestStoreSuiteDeleteOnAck(t *testing.T) {
	f := allFeatures
	f.Retention = false
	outboxtest.RunStoreSuite(t, harness(0, false), f)
}

// Through a real PgBouncer in transaction pooling mode, when OUTBOX_TEST_PGBOUNCER_URL points at
// one in front of the test server: every statement on the simple protocol, LISTEN on a direct
// connection (ListenURL), since a transaction-pooled connection keeps no session.
func TestStoreSuitePgBouncer(t *testing.T) {
	url := outboxtest.ServiceAddr("OUTBOX_TEST_PGBOUNCER_URL", "")
	if url == "" {
		t.Skip("OUTBOX_TEST_PGBOUNCER_URL is not set (a PgBouncer in transaction mode in front of OUTBOX_TEST_POSTGRES_URL)")
	}
	outboxtest.RunStoreSuite(t, harnessWith(func(c *postgres.Config) {
		c.URL = url
		c.QueryExecMode = pgx.QueryExecModeSimpleProtocol
		c.ListenURL = testURL()
		c.KeepDelivered = true
	}), allFeatures)
}
