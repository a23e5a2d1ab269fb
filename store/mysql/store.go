package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-sql-driver/mysql"
	"github.com/txoutbox/outbox"
)

// Store is an outbox table in a MySQL or MariaDB database.
type Store struct {
	cfg       Config
	db        *sql.DB
	table     string // quoted, safe to paste into SQL
	keys      string // the key-lock table, quoted
	version   string
	hubKey    string
	hub       *hub
	cursor    keyCursor // where the next ordered claim starts walking the keys
	pruneMu   sync.Mutex
	prune     pruneState // the key-lock table's sweep (prune.go)
	pruneHeld func()     // tests: called while a prune holds the rows it will delete
	closed    atomic.Bool
	closeOnce sync.Once

	mu        sync.Mutex
	listeners map[chan struct{}]func() bool // Listen's channels and their context hooks
}

// New validates cfg, connects, and refuses a server without FOR UPDATE SKIP LOCKED. It does not
// create the table: call EnsureSchema, or apply SchemaSQL with your migration tool.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	dcfg, err := cfg.driverConfig()
	if err != nil {
		return nil, err
	}
	conn, err := mysql.NewConnector(dcfg)
	if err != nil {
		return nil, fmt.Errorf("mysql: open %s: invalid connection settings", dcfg.Addr)
	}
	s := &Store{cfg: cfg, db: sql.OpenDB(conn), table: quote(cfg.Table), keys: quote(cfg.Table + "_keys")}
	s.db.SetMaxOpenConns(cfg.MaxOpenConns)
	s.db.SetMaxIdleConns(cfg.MaxOpenConns)
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := s.db.QueryRowContext(pingCtx, "SELECT VERSION()").Scan(&s.version); err != nil {
		_ = s.db.Close()
		return nil, fmt.Errorf("mysql: connect to %s database %q as %q: %w", dcfg.Addr, dcfg.DBName, dcfg.User, err)
	}
	if err := checkVersion(s.version); err != nil {
		_ = s.db.Close()
		return nil, err
	}
	s.hubKey = hubKey(dcfg.Addr, dcfg.DBName, cfg.Table)
	s.hub = acquireHub(s.hubKey)
	return s, nil
}

// checkVersion refuses servers older than the first with SKIP LOCKED.
func checkVersion(v string) error {
	name, minimum := "MySQL", []int{8, 0, 1}
	if strings.Contains(strings.ToLower(v), "mariadb") {
		name, minimum = "MariaDB", []int{10, 6, 0}
	}
	num := v
	if i := strings.IndexFunc(num, func(r rune) bool { return r != '.' && (r < '0' || r > '9') }); i >= 0 {
		num = num[:i]
	}
	parts := strings.Split(num, ".")
	for i, want := range minimum {
		have := 0
		if i < len(parts) {
			n, err := strconv.Atoi(parts[i])
			if err != nil {
				return fmt.Errorf("mysql: connect: cannot read the server version %q", v)
			}
			have = n
		}
		if have != want {
			if have < want {
				return fmt.Errorf("mysql: connect: server %s %s has no FOR UPDATE SKIP LOCKED; the store needs %s %d.%d.%d or later",
					name, v, name, minimum[0], minimum[1], minimum[2])
			}
			return nil
		}
	}
	return nil
}

// quote quotes a validated identifier.
func quote(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

// DB returns the store's database handle, for the caller's own transactions.
func (s *Store) DB() *sql.DB { return s.db }

// ServerVersion is what the server reported at New.
func (s *Store) ServerVersion() string { return s.version }

// Close closes the database handle and the channels Listen returned. Every later call returns
// outbox.ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.closeListeners()
		releaseHub(s.hubKey)
		_ = s.db.Close()
	})
	return nil
}

func (s *Store) checkOpen() error {
	if s.closed.Load() {
		return outbox.ErrClosed
	}
	return nil
}
