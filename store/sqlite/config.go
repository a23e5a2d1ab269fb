package sqlite

import (
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Config configures a Store. Exactly one of Path, DSN and DB says which database to use.
type Config struct {
	// Path is the database file, created when missing. The store opens it with WAL journaling,
	// foreign keys on, BEGIN IMMEDIATE transactions and BusyTimeout, and closes it on Close.
	Path string
	// DSN is a modernc.org/sqlite data source name ("file:app.db?_pragma=..."), for options Path
	// cannot express. The options it does not set itself are added as for Path: busy_timeout,
	// journal_mode(WAL), foreign_keys(1) and _txlock=immediate. The store closes it on Close.
	DSN string
	// DB is your own database handle. The store uses it as it is (open it with DSN(path) to get
	// the settings Path would apply), never closes it, and cannot hook its commits: see the
	// package documentation on notifications.
	DB *sql.DB
	// Table is the outbox table. It must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$ and is always
	// quoted. Default "outbox" (DefaultTable).
	Table string
	// KeepDelivered keeps acknowledged messages as delivered, for status tracking and
	// outbox.Retention, instead of deleting them. Default false: Ack deletes.
	KeepDelivered bool
	// MaxPayloadBytes bounds a message's Payload plus Result at write time.
	// Default outbox.DefaultMaxPayloadBytes.
	MaxPayloadBytes int
	// WriteHooks run on every message Add writes, before it is validated. Default none.
	WriteHooks []backend.WriteHook
	// BusyTimeout is how long a connection waits for another process's write lock before failing
	// with SQLITE_BUSY. Used with Path and DSN. Default 5s (DefaultBusyTimeout).
	BusyTimeout time.Duration
	// MaxOpenConns bounds the connections the store opens (Path and DSN). Default 1
	// (DefaultMaxOpenConns): SQLite runs one writer at a time anyway, and with one connection
	// concurrent writers in this process wait in database/sql, bounded by their context,
	// instead of contending for the file lock. Raise it for read-heavy use of DB(); writers then
	// rely on BusyTimeout.
	MaxOpenConns int
}

// Documented defaults of Config, exported so that docs, the CLI and other wiring cannot drift
// from them.
const (
	// DefaultTable is the outbox table.
	DefaultTable = "outbox"
	// DefaultBusyTimeout is how long a connection waits for another process's write lock.
	DefaultBusyTimeout = 5 * time.Second
	// DefaultMaxOpenConns bounds the connections the store opens: SQLite runs one writer at a
	// time anyway.
	DefaultMaxOpenConns = 1
)

func (c Config) withDefaults() Config {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = outbox.DefaultMaxPayloadBytes
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = DefaultBusyTimeout
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = DefaultMaxOpenConns
	}
	return c
}

// Validate names the first invalid field. Zero values are valid where a default exists.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "sqlite", Field: field, Problem: problem}
	}
	set := 0
	for _, ok := range []bool{c.Path != "", c.DSN != "", c.DB != nil} {
		if ok {
			set++
		}
	}
	switch {
	case set == 0:
		return bad("Path", "is empty: set one of Path, DSN or DB")
	case set > 1:
		return bad("Path", "conflicts: set only one of Path, DSN or DB")
	case strings.ContainsRune(c.Path, '?'):
		return bad("Path", "contains '?': use DSN to pass options")
	case c.Path != "" && isMemory(c.Path):
		return bad("Path", "is an in-memory database: each connection would see its own empty database; use a file (in a temporary directory for tests)")
	case c.DSN != "" && isMemory(c.DSN):
		return bad("DSN", "names an in-memory or temporary database: each connection would see its own empty database; use a file (in a temporary directory for tests)")
	case c.MaxPayloadBytes < 0:
		return bad("MaxPayloadBytes", "is negative")
	case c.BusyTimeout < 0:
		return bad("BusyTimeout", "is negative")
	case c.BusyTimeout > 0 && c.BusyTimeout < time.Millisecond:
		return bad("BusyTimeout", "is below 1ms, SQLite's resolution")
	case c.MaxOpenConns < 0:
		return bad("MaxOpenConns", "is negative")
	case c.DB != nil && c.MaxOpenConns != 0:
		return bad("MaxOpenConns", "is set with DB: size your own pool")
	}
	if c.Table != "" {
		if err := checkTable(c.Table); err != nil {
			return err
		}
	}
	for i, h := range c.WriteHooks {
		if h == nil {
			return bad(fmt.Sprintf("WriteHooks[%d]", i), "is nil")
		}
	}
	if c.DSN != "" {
		if i := strings.IndexByte(c.DSN, '?'); i >= 0 {
			if _, err := url.ParseQuery(c.DSN[i+1:]); err != nil {
				return bad("DSN", "has a malformed query: "+err.Error())
			}
		}
	}
	return nil
}

// checkTable accepts the identifiers every store accepts, except SQLite's reserved prefix.
func checkTable(table string) error {
	if err := backend.CheckIdentifier("sqlite", "Table", table); err != nil {
		return err
	}
	if strings.HasPrefix(strings.ToLower(table), "sqlite_") {
		return &outbox.ConfigError{Component: "sqlite", Field: "Table", Problem: fmt.Sprintf("%q uses the prefix sqlite_, which SQLite reserves", table)}
	}
	return nil
}

func isMemory(name string) bool {
	name = strings.TrimPrefix(name, "file:")
	if i := strings.IndexByte(name, '?'); i >= 0 {
		if q, err := url.ParseQuery(name[i+1:]); err == nil && q.Get("mode") == "memory" {
			return true
		}
		name = name[:i]
	}
	// An empty name is a private temporary database per connection: as useless here as :memory:.
	return name == ":memory:" || name == ""
}

// DSN returns the data source name the store uses for a database file path: WAL journaling,
// foreign keys on, a busy timeout and BEGIN IMMEDIATE transactions. Open your own *sql.DB with
// it (driver "sqlite") to share the settings a store opened from Config.Path has.
func DSN(path string, busyTimeout time.Duration) string {
	return withOptions(path, busyTimeout)
}

// withOptions adds to dsn the connection options it does not set itself.
func withOptions(dsn string, busyTimeout time.Duration) string {
	if busyTimeout <= 0 {
		busyTimeout = DefaultBusyTimeout
	}
	var q url.Values
	if i := strings.IndexByte(dsn, '?'); i >= 0 {
		q, _ = url.ParseQuery(dsn[i+1:]) // Validate has rejected a malformed query
	}
	has := func(pragma string) bool {
		for _, p := range q["_pragma"] {
			if strings.HasPrefix(strings.ToLower(strings.TrimSpace(p)), pragma) {
				return true
			}
		}
		return false
	}
	var add []string
	// Pragmas run on every new connection. busy_timeout first, so that switching the file to
	// WAL waits for other processes rather than failing.
	if !has("busy_timeout") && q.Get("_busy_timeout") == "" && q.Get("_timeout") == "" {
		add = append(add, fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()))
	}
	if !has("journal_mode") && q.Get("_journal_mode") == "" && q.Get("_journal") == "" {
		add = append(add, "_pragma=journal_mode(WAL)")
	}
	if !has("foreign_keys") && q.Get("_foreign_keys") == "" && q.Get("_fk") == "" {
		add = append(add, "_pragma=foreign_keys(1)")
	}
	if q.Get("_txlock") == "" {
		add = append(add, "_txlock=immediate")
	}
	if len(add) == 0 {
		return dsn
	}
	sep := "?"
	if strings.IndexByte(dsn, '?') >= 0 {
		sep = "&"
	}
	return dsn + sep + strings.Join(add, "&")
}
