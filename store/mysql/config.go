package mysql

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Defaults of Config.
const (
	DefaultTable          = "outbox"
	DefaultPort           = 3306
	DefaultConnectTimeout = 10 * time.Second
	// DefaultMaxOpenConns bounds the store's connections. The pool keeps as many idle, so
	// that writers and relays reuse connections instead of dialing one per transaction
	// (database/sql's own default keeps 2).
	DefaultMaxOpenConns = 16
)

// Config says where the outbox table lives. Connect with URL (mysql://user:pass@host:3306/db),
// with DSN (the driver's user:pass@tcp(host:3306)/db form) or with Host and the fields after it.
type Config struct {
	// URL is mysql://user:password@host:port/database?param=value. Exclusive with DSN and Host.
	URL outbox.Secret
	// DSN is a go-sql-driver/mysql data source name. Exclusive with URL and Host.
	DSN outbox.Secret
	// Host of the server, used when URL and DSN are empty. Default "127.0.0.1".
	Host string
	// Port of the server. Default DefaultPort.
	Port int
	// Database holds the table.
	Database string
	// User to connect as.
	User string
	// Password of User.
	Password outbox.Secret
	// Table is the outbox table's name. Default DefaultTable.
	Table string
	// MaxPayloadBytes bounds Payload plus Result of each written message.
	// Default outbox.DefaultMaxPayloadBytes.
	MaxPayloadBytes int
	// WriteHooks run on every written message before it is validated. Default none.
	WriteHooks []backend.WriteHook
	// ConnectTimeout bounds New's first connection. Default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxOpenConns bounds the connections the store opens; as many are kept idle. Give at
	// least the relay's Concurrency plus the writers that use DB() at once. Default
	// DefaultMaxOpenConns.
	MaxOpenConns int
	// KeepDelivered keeps acknowledged messages as delivered, for status tracking and
	// outbox.Retention, instead of deleting them. Default false.
	KeepDelivered bool
}

func (c Config) withDefaults() Config {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = outbox.DefaultMaxPayloadBytes
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = DefaultMaxOpenConns
	}
	if c.URL == "" && c.DSN == "" {
		if c.Host == "" {
			c.Host = "127.0.0.1"
		}
		if c.Port == 0 {
			c.Port = DefaultPort
		}
	}
	return c
}

// Validate names the first invalid field. Zero values are valid: they mean the default.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "mysql", Field: field, Problem: problem}
	}
	hostFields := c.Host != "" || c.Port != 0 || c.Database != "" || c.User != "" || c.Password != ""
	switch {
	case c.URL != "" && c.DSN != "":
		return bad("URL", "is set together with DSN; give one of them")
	case (c.URL != "" || c.DSN != "") && hostFields:
		return bad("Host", "and the other connection fields are set together with URL or DSN; give one of them")
	case c.Port < 0 || c.Port > 65535:
		return bad("Port", fmt.Sprintf("%d is not a TCP port", c.Port))
	case c.MaxPayloadBytes < 0:
		return bad("MaxPayloadBytes", "is negative")
	case c.ConnectTimeout < 0:
		return bad("ConnectTimeout", "is negative")
	case c.MaxOpenConns < 0:
		return bad("MaxOpenConns", "is negative")
	}
	if _, err := c.driverConfig(); err != nil {
		return err
	}
	return backend.CheckIdentifier("mysql", "Table", c.withDefaults().Table)
}

// driverConfig builds the driver's config. Its errors never quote the connection string.
func (c Config) driverConfig() (*mysql.Config, error) {
	c = c.withDefaults()
	var cfg *mysql.Config
	switch {
	case c.DSN != "":
		parsed, err := mysql.ParseDSN(c.DSN.Reveal())
		if err != nil {
			return nil, &outbox.ConfigError{Component: "mysql", Field: "DSN", Problem: "is not a valid data source name"}
		}
		cfg = parsed
	case c.URL != "":
		parsed, err := fromURL(c.URL.Reveal())
		if err != nil {
			return nil, &outbox.ConfigError{Component: "mysql", Field: "URL", Problem: err.Error()}
		}
		cfg = parsed
	default:
		cfg = mysql.NewConfig()
		cfg.Net, cfg.Addr = "tcp", fmt.Sprintf("%s:%d", c.Host, c.Port)
		cfg.User, cfg.Passwd, cfg.DBName = c.User, c.Password.Reveal(), c.Database
	}
	// Times are stored and compared in UTC, on the server's clock.
	cfg.ParseTime, cfg.Loc = true, time.UTC
	cfg.Timeout = c.ConnectTimeout
	cfg.MultiStatements = true // SchemaSQL is several statements
	return cfg, nil
}

// fromURL turns mysql://user:pass@host:port/db?params into a driver config.
func fromURL(raw string) (*mysql.Config, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "mysql" || u.Host == "" {
		return nil, fmt.Errorf("is not a mysql://user:password@host:port/database URL")
	}
	host := u.Host
	if u.Port() == "" {
		host = fmt.Sprintf("%s:%d", strings.Trim(u.Hostname(), "[]"), DefaultPort)
	}
	dsn := "tcp(" + host + ")/" + strings.TrimPrefix(u.Path, "/")
	if u.RawQuery != "" {
		dsn += "?" + u.RawQuery
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("has parameters the driver does not accept")
	}
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	return cfg, nil
}
