package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txoutbox/outbox"
)

// Store is the PostgreSQL outbox: the relay side (outbox.Store, outbox.Notifier, outbox.Inspector,
// outbox.Retention) and the write side (Add, AddSQL, Execute). It is safe for concurrent use, and
// any number of Stores, in any number of processes, may share one table.
type Store struct {
	cfg     Config
	pool    *pgxpool.Pool
	ownPool bool
	table   string // quoted schema.table, safe to paste into SQL
	channel string // NOTIFY channel
	// lockSpace prefixes the key locks' hash, so stores over different tables never make each
	// other's writers wait.
	lockSpace string
	q         queries
	gate      *notifyGate
	wal       *walStream // nil in table mode

	closed    atomic.Bool
	done      context.Context // ends at Close: stops listeners
	close     context.CancelFunc
	listeners sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ outbox.Store     = (*Store)(nil)
	_ outbox.Notifier  = (*Store)(nil)
	_ outbox.Inspector = (*Store)(nil)
	_ outbox.Retention = (*Store)(nil)
)

// New validates cfg and returns a store. Unless cfg.Pool is given it opens a pool and checks
// that the server answers within ConnectTimeout. It does not create the table: call
// EnsureSchema, or apply UpgradeSQL's DDL with your migration tool.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{
		cfg:     cfg,
		pool:    cfg.Pool,
		table:   pgx.Identifier{cfg.Schema, cfg.Table}.Sanitize(),
		channel: channelName(cfg.Schema, cfg.Table),
		// NUL cannot appear in an identifier, so schema and table cannot run into the key.
		lockSpace: "outbox key\x00" + cfg.Schema + "\x00" + cfg.Table + "\x00",
	}
	s.done, s.close = context.WithCancel(context.Background())
	s.q = buildQueries(s.table, cfg.KeepDelivered)
	s.gate = &notifyGate{interval: cfg.NotifyInterval, send: s.notify}
	if cfg.WAL != nil {
		s.wal = newWALStream(s)
	}
	if s.pool != nil {
		return s, nil
	}
	pcfg, err := cfg.poolConfig()
	if err != nil {
		s.close()
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("postgres: open pool to %s: %w", describe(pcfg.ConnConfig), err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		s.close()
		return nil, fmt.Errorf("postgres: connect to %s: %w", describe(pcfg.ConnConfig), err)
	}
	s.pool, s.ownPool = pool, true
	return s, nil
}

// describe names a server for errors without its password.
func describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d database %q as %q", c.Host, c.Port, c.Database, c.User)
}

// channelName derives the NOTIFY channel from the table, so stores over different tables never
// wake each other. Channel names share the 63-byte identifier limit; longer ones are hashed.
func channelName(schema, table string) string {
	name := "outbox." + schema + "." + table
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "outbox." + hex.EncodeToString(sum[:16])
}

// Pool returns the pool the store uses, for the caller's own transactions.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Channel returns the NOTIFY channel writes signal on.
func (s *Store) Channel() string { return s.channel }

// Table returns the quoted, schema-qualified table name.
func (s *Store) Table() string { return s.table }

// String describes the store for logs, without credentials.
func (s *Store) String() string { return "postgres.Store{" + s.cfg.String() + "}" }

// Close stops the store's listeners and closes the pool if the store opened it (a Pool passed
// in Config stays open). Every later call returns outbox.ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.close()
		s.gate.close()
		s.listeners.Wait()
		if s.ownPool {
			s.pool.Close()
		}
	})
	return nil
}

func (s *Store) checkOpen() error {
	if s.closed.Load() {
		return outbox.ErrClosed
	}
	return nil
}

// notify sends a NOTIFY on its own (the notify gate's trailing signal). It commits
// asynchronously: a notifying commit holds PostgreSQL's global notify lock until it returns, and
// a wake-up signal needs no durability. Failure only delays the relay until its next poll, so it
// is not reported.
func (s *Store) notify(ctx context.Context) {
	_, _ = s.pool.Exec(ctx, "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')", s.channel)
}
