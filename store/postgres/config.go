package postgres

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Config says where the outbox table lives and how the store treats it. Connect with URL, with
// the origin package's Host/Port/Database/User/Password/SSLMode fields, or hand over your own
// Pool. The zero value of every other field means its documented default.
type Config struct {
	// URL is a PostgreSQL connection string (postgres://... or key=value). It may carry pgx
	// options such as default_query_exec_mode=simple_protocol (for PgBouncer in transaction
	// mode). Exclusive with Host and Pool.
	URL string
	// Host of the server, used when URL and Pool are empty. Default "localhost".
	Host string
	// Port of the server. Default 5432.
	Port int
	// Database to connect to. Default: the server's default (the user's name).
	Database string
	// User to connect as. Default: the server's default (PGUSER or the OS user).
	User string
	// Password of User. Never shown by String or in errors. Default none.
	Password string
	// SSLMode is disable, allow, prefer, require, verify-ca or verify-full. Default prefer.
	SSLMode string
	// Pool is your own pool; the store uses it and never closes it. Exclusive with URL and Host.
	Pool *pgxpool.Pool
	// MaxConns bounds the pool the store opens (not a Pool you pass). Default: pgx's default,
	// the larger of 4 and the number of CPUs.
	MaxConns int32
	// QueryExecMode of the pool the store opens. Default pgx's (cached prepared statements); use
	// pgx.QueryExecModeSimpleProtocol behind PgBouncer in transaction pooling mode.
	QueryExecMode pgx.QueryExecMode
	// ConnectTimeout bounds New's first connection and each reconnection. Default 10s.
	ConnectTimeout time.Duration
	// ListenURL is the connection string the notifier's LISTEN connection uses. LISTEN needs a
	// session, which PgBouncer in transaction mode does not give, so point this at PostgreSQL
	// itself there. Default: the pool's own connection settings.
	ListenURL string

	// Schema holds the table. Default "public".
	Schema string
	// Table is the outbox table's name. Default "outbox".
	Table string
	// KeepDelivered keeps acknowledged messages as delivered (with their delivery time) instead
	// of deleting them: the origin package's status tracking. Delete them later with
	// DeleteDelivered (outbox.Retention), which the relay runs when RetainDelivered is set.
	// Default false: delete on ack.
	KeepDelivered bool
	// MaxPayloadBytes bounds Payload plus Result of each written message.
	// Default outbox.DefaultMaxPayloadBytes.
	MaxPayloadBytes int
	// NotifyInterval spaces the NOTIFYs of this store's writes. The first write of an interval
	// notifies inside its transaction, so the relay wakes on its commit; later writes of the
	// interval rely on that one and on a trailing NOTIFY sent an interval later. PostgreSQL
	// serialises the commits of notifying transactions, so notifying on every write costs
	// write throughput under concurrency. Default 2ms; negative: every write notifies.
	NotifyInterval time.Duration
	// WriteHooks run on every written message before it is validated (e.g. to copy trace context
	// into Headers). Default none.
	WriteHooks []backend.WriteHook
	// WAL switches the store to logical-replication mode (see WALConfig). Nil: table mode.
	WAL *WALConfig
}

var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = "public"
	}
	if c.Table == "" {
		c.Table = "outbox"
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = outbox.DefaultMaxPayloadBytes
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.NotifyInterval == 0 {
		c.NotifyInterval = 2 * time.Millisecond
	}
	if c.WAL != nil {
		w := c.WAL.withDefaults(c.Schema, c.Table)
		c.WAL = &w
	}
	if c.URL == "" && c.Pool == nil {
		if c.Host == "" {
			c.Host = "localhost"
		}
		if c.Port == 0 {
			c.Port = 5432
		}
	}
	return c
}

// Validate names the first invalid field. Zero values are valid: they mean the default.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "postgres", Field: field, Problem: problem}
	}
	hostFields := c.Host != "" || c.Port != 0 || c.Database != "" || c.User != "" || c.Password != "" || c.SSLMode != ""
	switch {
	case c.Pool != nil && c.URL != "":
		return bad("URL", "is set together with Pool; give one of them")
	case c.Pool != nil && hostFields:
		return bad("Host", "and the other connection fields are set together with Pool; give one of them")
	case c.URL != "" && hostFields:
		return bad("Host", "and the other connection fields are set together with URL; give one of them")
	case c.Port < 0 || c.Port > 65535:
		return bad("Port", fmt.Sprintf("%d is not a TCP port", c.Port))
	case c.SSLMode != "" && !contains(sslModes, c.SSLMode):
		return bad("SSLMode", fmt.Sprintf("%q is not one of %s", c.SSLMode, strings.Join(sslModes, ", ")))
	case c.MaxConns < 0:
		return bad("MaxConns", "is negative")
	case c.ConnectTimeout < 0:
		return bad("ConnectTimeout", "is negative")
	case c.MaxPayloadBytes < 0:
		return bad("MaxPayloadBytes", "is negative")
	case strings.ContainsAny(c.Host, " '\\\x00"):
		return bad("Host", "contains a space, quote, backslash or NUL")
	}
	for _, f := range []struct{ name, value string }{{"Database", c.Database}, {"User", c.User}, {"Password", c.Password}} {
		if strings.ContainsRune(f.value, 0) {
			return bad(f.name, "contains a NUL byte")
		}
	}
	if c.URL != "" {
		if _, err := pgxpool.ParseConfig(c.URL); err != nil {
			// The parse error may quote the string, password included: say only what is wrong.
			return bad("URL", "is not a valid PostgreSQL connection string")
		}
	}
	if c.ListenURL != "" {
		if _, err := pgx.ParseConfig(c.ListenURL); err != nil {
			return bad("ListenURL", "is not a valid PostgreSQL connection string")
		}
	}
	if c.WAL != nil {
		if err := c.WAL.validate(); err != nil {
			return err
		}
	}
	d := c.withDefaults()
	if err := checkIdentifier("Schema", d.Schema); err != nil {
		return err
	}
	return checkIdentifier("Table", d.Table)
}

func checkIdentifier(field, name string) error {
	return backend.CheckIdentifier("postgres", field, name)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// poolConfig builds the config of the pool the store opens.
func (c Config) poolConfig() (*pgxpool.Config, error) {
	connString := c.URL
	if connString == "" {
		parts := []string{"host=" + quoteDSN(c.Host), fmt.Sprintf("port=%d", c.Port)}
		for _, kv := range [][2]string{{"dbname", c.Database}, {"user", c.User}, {"password", c.Password}, {"sslmode", c.SSLMode}} {
			if kv[1] != "" {
				parts = append(parts, kv[0]+"="+quoteDSN(kv[1]))
			}
		}
		connString = strings.Join(parts, " ")
	}
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, errors.New("postgres: invalid connection settings (details withheld: they may contain the password)")
	}
	if c.MaxConns > 0 {
		cfg.MaxConns = c.MaxConns
	}
	if c.QueryExecMode != 0 {
		cfg.ConnConfig.DefaultQueryExecMode = c.QueryExecMode
	}
	cfg.ConnConfig.ConnectTimeout = c.ConnectTimeout
	return cfg, nil
}

// quoteDSN quotes a value for a key=value connection string.
func quoteDSN(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
