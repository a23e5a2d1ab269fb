package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Store is an outbox table in a SQLite database. It is safe for concurrent use, and several
// stores (in this process or others) may share one table: that is how relays share work.
type Store struct {
	cfg    Config
	db     *sql.DB
	ownsDB bool
	hooked bool   // our connections signal commits themselves
	file   string // the database file, "" when in memory: the key of what stores share
	wlock  *writeLock
	hub    atomic.Pointer[backend.Signal]
	q      queries
	closed atomic.Bool
	once   sync.Once

	stmtMu sync.Mutex
	stmts  [maxPreparedRows + 1]*sql.Stmt // Execute's INSERTs, by row count; closed on Close

	mu        sync.Mutex
	listeners map[chan struct{}]func() bool // Listen's channels, to close on Close
}

// Compile-time checks of the capabilities the relay looks for.
var (
	_ outbox.Store     = (*Store)(nil)
	_ outbox.Notifier  = (*Store)(nil)
	_ outbox.Inspector = (*Store)(nil)
	_ outbox.Retention = (*Store)(nil)
)

// New opens the store described by cfg. It does not create the table: call EnsureSchema.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{cfg: cfg, q: newQueries(cfg.Table)}
	if cfg.DB != nil {
		s.db = cfg.DB
	} else {
		dsn := cfg.DSN
		if dsn == "" {
			dsn = cfg.Path
		}
		base, err := sqlite.NewConnector(withOptions(dsn, cfg.BusyTimeout))
		if err != nil {
			return nil, fmt.Errorf("sqlite: open %s: %w", cfg.name(), err)
		}
		s.db = sql.OpenDB(&hookedConnector{Connector: base, store: s})
		s.db.SetMaxOpenConns(cfg.MaxOpenConns)
		s.db.SetMaxIdleConns(cfg.MaxOpenConns)
		s.ownsDB, s.hooked = true, true
	}
	// The first query opens a connection, which applies the DSN options: a bad path or option
	// fails here rather than at the first write.
	var file string
	err := s.db.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file)
	if err != nil {
		if s.ownsDB {
			_ = s.db.Close()
		}
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.name(), err)
	}
	s.file = file
	s.wlock = writeLocks.acquire(file)
	s.hub.Store(hubs.acquire(hubKey(file, cfg.Table)))
	return s, nil
}

// name describes the database for error messages. A DSN is left out: its options may hold
// secrets such as an encryption key.
func (c Config) name() string {
	switch {
	case c.Path != "":
		return fmt.Sprintf("%q", c.Path)
	case c.DSN != "":
		return "DSN"
	}
	return "DB"
}

// DB returns the database handle the store uses, for the business side of the application.
func (s *Store) DB() *sql.DB { return s.db }

// Close stops notifications and closes the database if the store opened it (never a Config.DB).
// Calls after the first return nil.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.closed.Store(true)
		s.closeListeners()
		s.stmtMu.Lock()
		for i, st := range s.stmts {
			if st != nil {
				_ = st.Close()
				s.stmts[i] = nil
			}
		}
		s.stmtMu.Unlock()
		hubs.release(hubKey(s.file, s.cfg.Table))
		writeLocks.release(s.file)
		if s.ownsDB {
			if cerr := s.db.Close(); cerr != nil {
				err = fmt.Errorf("sqlite: close: %w", cerr)
			}
		}
	})
	return err
}

func (s *Store) checkOpen() error {
	if s == nil {
		return errors.New("store is nil")
	}
	if s.closed.Load() {
		return outbox.ErrClosed
	}
	return nil
}

// hookedConnector opens connections through modernc.org/sqlite and registers on each the hooks
// that turn a commit which inserted into the outbox table into a notification.
type hookedConnector struct {
	driver.Connector
	store *Store
}

func (c *hookedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	hr, ok := conn.(sqlite.HookRegisterer)
	if !ok {
		_ = conn.Close()
		return nil, errors.New("sqlite: driver connection does not support commit hooks")
	}
	// The hooks run synchronously on the goroutine using the connection, and database/sql hands
	// a connection to one goroutine at a time; the atomic only keeps the race detector informed
	// across those hand-offs.
	var inserted atomic.Bool
	table := c.store.cfg.Table
	hr.RegisterPreUpdateHook(func(d sqlite.SQLitePreUpdateData) {
		if d.Op == sqlite3.SQLITE_INSERT && d.DatabaseName == "main" && strings.EqualFold(d.TableName, table) {
			inserted.Store(true)
		}
	})
	hr.RegisterCommitHook(func() int32 {
		if inserted.Swap(false) {
			c.store.signal()
		}
		return 0 // let the commit proceed
	})
	hr.RegisterRollbackHook(func() { inserted.Store(false) })
	return conn, nil
}

// signal wakes the listeners of every store over this file and table.
func (s *Store) signal() {
	if h := s.hub.Load(); h != nil {
		h.Broadcast()
	}
}

// beginWrite takes this process's write lock of the file, then begins a transaction (BEGIN
// IMMEDIATE on the store's own connections). end rolls back unless committed, and releases
// the lock; it is safe to defer, including while a panic unwinds.
func (s *Store) beginWrite(ctx context.Context) (tx *sql.Tx, end func(), err error) {
	if err := s.wlock.lock(ctx); err != nil {
		return nil, nil, err
	}
	tx, err = s.db.BeginTx(ctx, nil)
	if err != nil {
		s.wlock.unlock()
		return nil, nil, err
	}
	return tx, func() {
		_ = tx.Rollback() // sql.ErrTxDone after Commit
		s.wlock.unlock()
	}, nil
}

// execWrite runs one writing statement under the write lock.
func (s *Store) execWrite(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := s.wlock.lock(ctx); err != nil {
		return nil, err
	}
	defer s.wlock.unlock()
	return s.db.ExecContext(ctx, query, args...)
}
