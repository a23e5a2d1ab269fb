package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/postgres"
)

// needLogical skips (fails in CI) when the test server cannot serve the WAL mode.
func needLogical(t testing.TB, admin *pgxpool.Pool) {
	t.Helper()
	var level string
	if err := admin.QueryRow(context.Background(), "SHOW wal_level").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		outboxtest.NeedService(t, "PostgreSQL with wal_level = logical (scripts/services/postgres sets it)",
			errors.New("wal_level is "+level))
	}
}

// newWALStore opens a WAL-mode store over a fresh schema, with its table, publication and slot;
// the slot and publication are dropped when the test ends, after every store over them closed.
func newWALStore(t testing.TB, tweak func(*postgres.Config)) (*postgres.Store, postgres.Config) {
	t.Helper()
	admin := adminPool(t)
	needLogical(t, admin)
	cfg := postgres.Config{URL: testURL(), Schema: newSchema(t), WAL: &postgres.WALConfig{
		StatusInterval: 100 * time.Millisecond, HeartbeatInterval: time.Second, TakeoverInterval: 200 * time.Millisecond,
	}}
	if tweak != nil {
		tweak(&cfg)
	}
	t.Cleanup(func() { dropSlot(t, admin, cfg) })
	return openStore(t, cfg), cfg
}

// dropSlot drops the test's slot once no reader holds it (a closed reader's server process may
// take a moment to exit).
func dropSlot(t testing.TB, admin *pgxpool.Pool, cfg postgres.Config) {
	t.Helper()
	slot, pub := walNames(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := admin.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Errorf("drop slot %s: %v", slot, err)
			return
		}
		time.Sleep(20 * time.Millisecond) // the walsender exits on its own; nothing to wait on
	}
	if _, err := admin.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{pub}.Sanitize()); err != nil {
		t.Errorf("drop publication %s: %v", pub, err)
	}
}

func walNames(t testing.TB, cfg postgres.Config) (slot, publication string) {
	t.Helper()
	s, err := postgres.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.SlotStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pub := cfg.WAL.Publication
	if pub == "" {
		pub = st.Slot
	}
	return st.Slot, pub
}

// walHarness is the store suite's factory in WAL mode. The reader's replication connection goes
// through a TCP proxy that the lost-stream case cuts (its pool connects directly, so it keeps
// working); the standby, and the stores Reopen and Restart open, connect directly.
func walHarness(tweak func(*postgres.Config)) outboxtest.StoreFactory {
	return func(t *testing.T) outboxtest.StoreHarness {
		p, replication := proxiedURL(t)
		s, cfg := newWALStore(t, func(c *postgres.Config) {
			if tweak != nil {
				tweak(c)
			}
			c.WAL.ReplicationURL = replication
		})
		direct := cfg
		wal := *cfg.WAL
		wal.ReplicationURL = ""
		direct.WAL = &wal
		h := storeHarness(t, s, direct)
		h.CutStream = func(t *testing.T) {
			p.cutAll()
			waitFor(t, 10*time.Second, "the store to see that its replication connection ended", func() bool {
				st, err := s.SlotStatus(context.Background())
				return err == nil && !st.Holding
			})
		}
		h.Standby = func(t *testing.T) outbox.Store {
			standby := openStore(t, direct)
			syncStore(t, standby) // it holds the slot and has streamed what was written
			return standby
		}
		return h
	}
}

// proxiedURL returns a proxy to the test server and the test server's URL through it.
func proxiedURL(t *testing.T) (*proxy, string) {
	t.Helper()
	u, err := url.Parse(testURL())
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	u.Host = p.addr()
	return p, u.String()
}

// The store suite in WAL mode. Not applicable: Retention (acknowledged streamed messages are
// never written anywhere, so there is nothing to keep or delete) and Corrupt (a message in the
// WAL cannot be damaged after it is written; TestWALCorrupt covers what a foreign writer can
// put under the prefix). A second write of a used ID is not refused: the WAL has no index to
// check it against. In the first run the reader sends its status only when it stops, so the
// clean-stop cases see what the stop itself confirms (checked to fail, every acknowledged
// message handed out again, without the confirmation at the stop); the second has the tests'
// usual 100 ms interval.
func TestWALStoreSuite(t *testing.T) {
	f := allFeatures
	f.Retention = false
	f.AcceptsDuplicateIDs = true
	t.Run("Default", func(t *testing.T) {
		outboxtest.RunStoreSuite(t, walHarness(func(c *postgres.Config) { c.WAL.StatusInterval = time.Hour }), f)
	})
	t.Run("SimpleProtocol", func(t *testing.T) {
		outboxtest.RunStoreSuite(t, walHarness(func(c *postgres.Config) { c.QueryExecMode = pgx.QueryExecModeSimpleProtocol }), f)
	})
}
