// Package storeurl turns the outbox command's --store URL into a backend and its config, and
// redacts such URLs for display. It connects to nothing, so a bad URL is reported before any
// network traffic, as a usage error.
package storeurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/mongo"
	"github.com/txoutbox/outbox/store/mysql"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/store/sqlite"
)

// Kind names a store backend.
type Kind string

// The backends a store URL can name.
const (
	Postgres Kind = "postgres"
	Mongo    Kind = "mongodb"
	SQLite   Kind = "sqlite"
	MySQL    Kind = "mysql" // MySQL 8 and MariaDB 10.6 or later
)

// Options are the store settings that live outside the URL, from flags or the environment.
// Empty fields mean the backend's default.
type Options struct {
	Schema        string // postgres only; default "public"
	Table         string // postgres, mysql and sqlite; default "outbox"
	Collection    string // mongodb only; default "outbox"
	Database      string // mongodb only; default the database in the URL's path
	KeepDelivered bool   // mark acknowledged messages delivered instead of deleting them
	// PostgresMode is "table" (the default: messages are rows) or "wal" (messages are written
	// into the WAL and streamed from a logical replication slot; postgres.WALConfig).
	PostgresMode string
	// WAL holds the WAL mode's settings; any of them set outside WAL mode is refused, since it
	// would silently do nothing.
	WAL postgres.WALConfig
}

// The values of Options.PostgresMode.
const (
	ModeTable = "table"
	ModeWAL   = "wal"
)

// Target is a parsed store URL: its Kind and the config of that backend, validated.
type Target struct {
	Kind     Kind
	Postgres postgres.Config
	Mongo    mongo.Config
	SQLite   sqlite.Config
	MySQL    mysql.Config
}

// Parse reads a store URL — postgres://… or postgresql://…, mongodb://… or mongodb+srv://…,
// mysql://… (MySQL or MariaDB), sqlite:PATH — and combines it with o. The error names what is wrong and never repeats the
// URL, which may hold a password.
func Parse(raw string, o Options) (Target, error) {
	if raw == "" {
		return Target{}, errors.New("is empty: want " + wantURL)
	}
	kind, err := kindOf(raw)
	if err != nil {
		return Target{}, err
	}
	if err := o.fits(kind); err != nil {
		return Target{}, err
	}
	t := Target{Kind: kind}
	switch kind {
	case Postgres:
		t.Postgres = postgres.Config{URL: raw, Schema: o.Schema, Table: o.Table, KeepDelivered: o.KeepDelivered}
		if o.PostgresMode == ModeWAL {
			w := o.WAL
			t.Postgres.WAL = &w
		}
		err = t.Postgres.Validate()
	case Mongo:
		db := o.Database
		if db == "" {
			db = uriDatabase(raw) // what the store would take, named here so output can show it
		}
		t.Mongo = mongo.Config{URI: mongo.URI(raw), Database: db, Collection: o.Collection, KeepDelivered: o.KeepDelivered}
		err = t.Mongo.Validate()
	case SQLite:
		t.SQLite = sqlite.Config{Path: sqlitePath(raw), Table: o.Table, KeepDelivered: o.KeepDelivered}
		err = t.SQLite.Validate()
	case MySQL:
		t.MySQL = mysql.Config{URL: outbox.Secret(raw), Table: o.Table, KeepDelivered: o.KeepDelivered}
		err = t.MySQL.Validate()
	}
	if err != nil {
		return Target{}, err
	}
	return t, nil
}

// wantURL lists the store URLs the command takes, for errors.
const wantURL = "postgres://…, mysql://…, mongodb://… or sqlite:PATH"

// kindOf picks the backend from the URL's scheme.
func kindOf(raw string) (Kind, error) {
	scheme, _, ok := strings.Cut(raw, ":")
	if !ok || scheme == "" {
		return "", errors.New("has no scheme: want " + wantURL)
	}
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		if !strings.HasPrefix(raw[len(scheme):], "://") {
			return "", errors.New("a postgres URL starts with postgres://")
		}
		if _, err := url.Parse(raw); err != nil {
			return "", urlProblem(err)
		}
		return Postgres, nil
	case "mongodb", "mongodb+srv":
		if !strings.HasPrefix(raw[len(scheme):], "://") {
			return "", errors.New("a MongoDB URL starts with mongodb:// or mongodb+srv://")
		}
		return Mongo, nil
	case "mysql", "mariadb":
		if !strings.HasPrefix(raw[len(scheme):], "://") {
			return "", errors.New("a MySQL URL starts with mysql://")
		}
		if _, err := url.Parse(raw); err != nil {
			return "", urlProblem(err)
		}
		return MySQL, nil
	case "sqlite", "sqlite3", "file":
		if sqlitePath(raw) == "" {
			return "", errors.New("names no file: want sqlite:PATH, e.g. sqlite:./outbox.db")
		}
		return SQLite, nil
	}
	// Never echo the whole URL; the scheme alone is safe to show.
	if len(scheme) > 20 || strings.ContainsAny(scheme, "/@") {
		return "", errors.New("has an unknown scheme: want " + wantURL)
	}
	return "", fmt.Errorf("has unknown scheme %q: want %s", scheme, wantURL)
}

// sqlitePath returns the file of sqlite:PATH, sqlite://PATH or file:PATH.
func sqlitePath(raw string) string {
	_, rest, _ := strings.Cut(raw, ":")
	return strings.TrimPrefix(rest, "//")
}

// Check reports what Parse would find wrong with o for a store of kind, for commands that
// take the options without a URL (outbox migrate --print-sql).
func (o Options) Check(kind Kind) error { return o.fits(kind) }

// fits rejects options that mean nothing to kind, so a typo never passes silently.
func (o Options) fits(kind Kind) error {
	if err := o.fitsMode(kind); err != nil {
		return err
	}
	switch {
	case o.Schema != "" && kind != Postgres:
		return fmt.Errorf("--schema applies to postgres only, not %s", kind)
	case o.Table != "" && kind == Mongo:
		return errors.New("--table does not apply to mongodb: use --collection")
	case o.Collection != "" && kind != Mongo:
		return fmt.Errorf("--collection applies to mongodb only: use --table for %s", kind)
	case o.Database != "" && kind != Mongo:
		return fmt.Errorf("--database applies to mongodb only, not %s", kind)
	}
	return nil
}

// fitsMode checks the PostgreSQL mode and that the WAL settings come with WAL mode. Its errors
// are *outbox.ConfigError naming the option (PostgresMode, WAL.Slot, ...), so the command can
// report them under their own flag.
func (o Options) fitsMode(kind Kind) error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "storeurl", Field: field, Problem: problem}
	}
	switch o.PostgresMode {
	case "", ModeTable, ModeWAL:
	default:
		return bad("PostgresMode", fmt.Sprintf("%q is not table or wal", o.PostgresMode))
	}
	if o.PostgresMode != "" && kind != Postgres {
		return bad("PostgresMode", fmt.Sprintf("applies to postgres only, not %s", kind))
	}
	if o.PostgresMode == ModeWAL {
		return nil
	}
	for _, f := range []struct {
		field string
		set   bool
	}{
		{"WAL.Slot", o.WAL.Slot != ""}, {"WAL.Publication", o.WAL.Publication != ""},
		{"WAL.ReplicationURL", o.WAL.ReplicationURL != ""}, {"WAL.LagAlarmBytes", o.WAL.LagAlarmBytes != 0},
		{"WAL.MaxBuffered", o.WAL.MaxBuffered != 0}, {"WAL.StatusInterval", o.WAL.StatusInterval != 0},
		{"WAL.HeartbeatInterval", o.WAL.HeartbeatInterval != 0}, {"WAL.TakeoverInterval", o.WAL.TakeoverInterval != 0},
		{"WAL.MaxBufferedBytes", o.WAL.MaxBufferedBytes != 0},
	} {
		if f.set {
			return bad(f.field, "applies to the WAL mode only: add --postgres-mode wal (OUTBOX_POSTGRES_MODE=wal)")
		}
	}
	return nil
}

// uriDatabase returns the database in a MongoDB URL's path, or "".
func uriDatabase(raw string) string {
	p, ok := split(raw)
	if !ok {
		return ""
	}
	db, err := url.PathUnescape(p.path)
	if err != nil {
		return ""
	}
	return db
}

// urlProblem says why a URL did not parse without repeating it.
func urlProblem(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("is not a valid URL: %v", err)
}

// Table names where the messages live, for logs and output: schema.table, database.collection
// or the MySQL or SQLite table.
func (t Target) Table() string {
	switch t.Kind {
	case Postgres:
		return orDefault(t.Postgres.Schema, "public") + "." + orDefault(t.Postgres.Table, "outbox")
	case Mongo:
		return t.Mongo.Database + "." + orDefault(t.Mongo.Collection, "outbox")
	case MySQL:
		return orDefault(t.MySQL.Table, "outbox")
	}
	return orDefault(t.SQLite.Table, "outbox")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
