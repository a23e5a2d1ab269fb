package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/store/sqlite"
)

func TestConfigValidate(t *testing.T) {
	db := &sql.DB{} // never used: Validate only looks at whether it is set
	hook := func(context.Context, *outbox.Message) {}
	cases := []struct {
		name  string
		cfg   sqlite.Config
		field string // "" when valid
	}{
		{"PathOnly", sqlite.Config{Path: "a.db"}, ""},
		{"DSNOnly", sqlite.Config{DSN: "file:a.db?_pragma=busy_timeout(100)"}, ""},
		{"DBOnly", sqlite.Config{DB: db}, ""},
		{"AllOptions", sqlite.Config{Path: "a.db", Table: "events_2", KeepDelivered: true, MaxPayloadBytes: 10, WriteHooks: []backend.WriteHook{hook}, BusyTimeout: time.Second, MaxOpenConns: 4}, ""},
		{"Nothing", sqlite.Config{}, "Path"},
		{"PathAndDSN", sqlite.Config{Path: "a.db", DSN: "b.db"}, "Path"},
		{"PathAndDB", sqlite.Config{Path: "a.db", DB: db}, "Path"},
		{"QuestionMarkInPath", sqlite.Config{Path: "a.db?_pragma=x"}, "Path"},
		{"MemoryPath", sqlite.Config{Path: ":memory:"}, "Path"},
		{"MemoryDSN", sqlite.Config{DSN: "file:x?mode=memory"}, "DSN"},
		{"TemporaryDSN", sqlite.Config{DSN: "file:?_txlock=immediate"}, "DSN"},
		{"MalformedDSN", sqlite.Config{DSN: "a.db?x=%zz"}, "DSN"},
		{"TableWithQuote", sqlite.Config{Path: "a.db", Table: `out"box`}, "Table"},
		{"TableWithSpace", sqlite.Config{Path: "a.db", Table: "out box"}, "Table"},
		{"TableInjection", sqlite.Config{Path: "a.db", Table: "outbox; DROP TABLE users"}, "Table"},
		{"TableLeadingDigit", sqlite.Config{Path: "a.db", Table: "1outbox"}, "Table"},
		{"TableTooLong", sqlite.Config{Path: "a.db", Table: strings.Repeat("t", 64)}, "Table"},
		{"TableReserved", sqlite.Config{Path: "a.db", Table: "sqlite_outbox"}, "Table"},
		{"TableSchemaQualified", sqlite.Config{Path: "a.db", Table: "main.outbox"}, "Table"},
		{"NegativePayload", sqlite.Config{Path: "a.db", MaxPayloadBytes: -1}, "MaxPayloadBytes"},
		{"NegativeBusyTimeout", sqlite.Config{Path: "a.db", BusyTimeout: -time.Second}, "BusyTimeout"},
		{"TinyBusyTimeout", sqlite.Config{Path: "a.db", BusyTimeout: time.Microsecond}, "BusyTimeout"},
		{"NegativeConns", sqlite.Config{Path: "a.db", MaxOpenConns: -1}, "MaxOpenConns"},
		{"ConnsWithOwnDB", sqlite.Config{DB: db, MaxOpenConns: 2}, "MaxOpenConns"},
		{"NilHook", sqlite.Config{Path: "a.db", WriteHooks: []backend.WriteHook{hook, nil}}, "WriteHooks[1]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("valid config rejected: %v", err)
				}
				return
			}
			var ce *outbox.ConfigError
			if !errors.As(err, &ce) || ce.Field != c.field || ce.Component != "sqlite" {
				t.Fatalf("error %v, want a sqlite ConfigError naming %s", err, c.field)
			}
			if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.HasPrefix(err.Error(), "sqlite: ") {
				t.Fatalf("error %q must start with sqlite: and match outbox.ErrInvalidConfig", err)
			}
			// New validates the same way before touching the disk.
			if _, err := sqlite.New(context.Background(), c.cfg); !errors.As(err, &ce) {
				t.Fatalf("New accepted the config: %v", err)
			}
		})
	}
}

func TestNewOpenErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("MissingDirectory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")
		_, err := sqlite.New(ctx, sqlite.Config{Path: path})
		if err == nil || !strings.HasPrefix(err.Error(), "sqlite: open ") || !strings.Contains(err.Error(), "x.db") {
			t.Fatalf("error = %v, want sqlite: open naming the path", err)
		}
	})
	t.Run("BadDSNOption", func(t *testing.T) {
		dsn := "file:" + filepath.Join(t.TempDir(), "x.db") + "?_txlock=sometimes&_pragma=key('secret')"
		_, err := sqlite.New(ctx, sqlite.Config{DSN: dsn})
		if err == nil || !strings.Contains(err.Error(), "_txlock") {
			t.Fatalf("error = %v, want one naming _txlock", err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Fatalf("error %q shows the DSN's options", err)
		}
	})
}

func TestSchemaSQL(t *testing.T) {
	ddl, err := sqlite.SchemaSQL("events")
	if err != nil || !strings.Contains(ddl, `CREATE TABLE IF NOT EXISTS "events"`) {
		t.Fatalf("SchemaSQL(events) = %q, %v", ddl, err)
	}
	for _, bad := range []string{"", "a b", `x"`, "sqlite_master"} {
		if _, err := sqlite.SchemaSQL(bad); !errors.Is(err, outbox.ErrInvalidConfig) || !strings.HasPrefix(err.Error(), "sqlite: ") {
			t.Fatalf("SchemaSQL(%q) error = %v", bad, err)
		}
	}
	// The DDL a migration tool runs and EnsureSchema agree, and both are idempotent.
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := sql.Open("sqlite", sqlite.DSN(path, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for range 2 {
		if _, err := db.Exec(ddl); err != nil {
			t.Fatalf("applying Schema twice: %v", err)
		}
	}
	s := open(t, sqlite.Config{DB: db, Table: "events"})
	if err := s.EnsureSchema(context.Background()); err != nil {
		t.Fatalf("EnsureSchema over Schema's table: %v", err)
	}
}

func TestTableNames(t *testing.T) {
	// Keywords and mixed case are quoted, never pasted: each is its own table.
	path := filepath.Join(t.TempDir(), "x.db")
	for _, table := range []string{"select", "Outbox_Mixed", "_t"} {
		s := open(t, sqlite.Config{Path: path, Table: table})
		add(t, s, msg("T", ""))
		got := claim(t, s, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute})
		if len(got) != 1 {
			t.Fatalf("table %q: claimed %d messages, want its own 1", table, len(got))
		}
	}
}

func TestDSNOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	got := sqlite.DSN(path, 2*time.Second)
	for _, want := range []string{"_pragma=busy_timeout(2000)", "_pragma=journal_mode(WAL)", "_pragma=foreign_keys(1)", "_txlock=immediate"} {
		if !strings.Contains(got, want) {
			t.Fatalf("DSN = %q, missing %s", got, want)
		}
	}
	// A store opened from a DSN keeps the options it sets and gains the others.
	s := open(t, sqlite.Config{DSN: "file:" + path + "?_pragma=journal_mode(DELETE)&_pragma=busy_timeout(1234)"})
	var mode string
	var timeout int
	if err := s.DB().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "delete" {
		t.Fatalf("journal_mode = %q, %v; want the DSN's delete", mode, err)
	}
	if err := s.DB().QueryRow("PRAGMA busy_timeout").Scan(&timeout); err != nil || timeout != 1234 {
		t.Fatalf("busy_timeout = %d, %v; want the DSN's 1234", timeout, err)
	}
	var fk int
	if err := s.DB().QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Fatalf("foreign_keys = %d, %v; want 1 added", fk, err)
	}
	// A store opened from a path gets them all.
	p := open(t, sqlite.Config{Path: filepath.Join(t.TempDir(), "y.db"), BusyTimeout: 750 * time.Millisecond})
	if err := p.DB().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	if err := p.DB().QueryRow("PRAGMA busy_timeout").Scan(&timeout); err != nil || timeout != 750 {
		t.Fatalf("busy_timeout = %d, %v; want 750", timeout, err)
	}
}
