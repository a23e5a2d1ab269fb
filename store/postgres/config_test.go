package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

func TestConfigValidate(t *testing.T) {
	pool := &pgxpool.Pool{} // never used: Validate only checks it is there
	long := strings.Repeat("a", 64)
	tests := []struct {
		name  string
		cfg   postgres.Config
		field string // "" means valid
	}{
		{"zero value", postgres.Config{}, ""},
		{"url", postgres.Config{URL: "postgres://u:p@h:5432/db?sslmode=disable"}, ""},
		{"host fields", postgres.Config{Host: "db", Port: 5433, Database: "app", User: "u", Password: "p", SSLMode: "require"}, ""},
		{"own pool", postgres.Config{Pool: pool, Schema: "app", Table: "events"}, ""},
		{"63-char table", postgres.Config{Table: long[:63]}, ""},
		{"url and pool", postgres.Config{URL: "postgres://h/db", Pool: pool}, "URL"},
		{"url and host", postgres.Config{URL: "postgres://h/db", Host: "h"}, "Host"},
		{"pool and password", postgres.Config{Pool: pool, Password: "p"}, "Host"},
		{"bad url", postgres.Config{URL: "postgres://u:secret@h:notaport/db"}, "URL"},
		{"bad listen url", postgres.Config{ListenURL: "postgres://u:secret@h:notaport/db"}, "ListenURL"},
		{"port", postgres.Config{Port: 70000}, "Port"},
		{"negative port", postgres.Config{Port: -1}, "Port"},
		{"sslmode", postgres.Config{SSLMode: "sometimes"}, "SSLMode"},
		{"max conns", postgres.Config{MaxConns: -1}, "MaxConns"},
		{"connect timeout", postgres.Config{ConnectTimeout: -time.Second}, "ConnectTimeout"},
		{"payload limit", postgres.Config{MaxPayloadBytes: -1}, "MaxPayloadBytes"},
		{"host with quote", postgres.Config{Host: "h' password='x"}, "Host"},
		{"injection table", postgres.Config{Table: "outbox; drop table users"}, "Table"},
		{"quoted table", postgres.Config{Table: `out"box`}, "Table"},
		{"64-char table", postgres.Config{Table: long}, "Table"},
		{"digit first", postgres.Config{Table: "1outbox"}, "Table"},
		{"dotted table", postgres.Config{Table: "public.outbox"}, "Table"},
		{"unicode table", postgres.Config{Table: "outböx"}, "Table"},
		{"injection schema", postgres.Config{Schema: "x; drop schema public"}, "Schema"},
		{"64-char schema", postgres.Config{Schema: long}, "Schema"},
		{"wal defaults", postgres.Config{WAL: &postgres.WALConfig{}}, ""},
		{"wal long table", postgres.Config{Table: long[:63], Schema: "Billing", WAL: &postgres.WALConfig{}}, ""},
		{"wal slot upper case", postgres.Config{WAL: &postgres.WALConfig{Slot: "Outbox"}}, "WAL.Slot"},
		{"wal slot injection", postgres.Config{WAL: &postgres.WALConfig{Slot: "x'); drop table t; --"}}, "WAL.Slot"},
		{"wal publication", postgres.Config{WAL: &postgres.WALConfig{Publication: "a-b"}}, "WAL.Publication"},
		{"wal buffer", postgres.Config{WAL: &postgres.WALConfig{MaxBuffered: -1}}, "WAL.MaxBuffered"},
		{"wal status interval", postgres.Config{WAL: &postgres.WALConfig{StatusInterval: -time.Second}}, "WAL.StatusInterval"},
		{"wal alarm", postgres.Config{WAL: &postgres.WALConfig{LagAlarmBytes: -1}}, "WAL.LagAlarmBytes"},
		{"wal replication url", postgres.Config{WAL: &postgres.WALConfig{ReplicationURL: "postgres://u:secret@h:notaport/db"}}, "WAL.ReplicationURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ce *outbox.ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field || ce.Component != "postgres" {
				t.Fatalf("Validate() = %v, want a postgres ConfigError naming %s", err, tt.field)
			}
			if !errors.Is(err, outbox.ErrInvalidConfig) || strings.Contains(err.Error(), "secret") {
				t.Fatalf("error %q: not ErrInvalidConfig, or shows the password", err)
			}
		})
	}
}

func TestConfigStringHidesPassword(t *testing.T) {
	for _, cfg := range []postgres.Config{
		{URL: "postgres://user:s3cret@db:5432/app"},
		{URL: "postgres://user@db:5432/app?password=s3cret"},
		{URL: "host=db user=user password=s3cret dbname=app"},
		{Host: "db", User: "user", Password: "s3cret"},
	} {
		if s := cfg.String(); strings.Contains(s, "s3cret") || !strings.Contains(s, "db") {
			t.Errorf("String() = %q", s)
		}
	}
}

func TestNewErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("InvalidConfig", func(t *testing.T) {
		_, err := postgres.New(ctx, postgres.Config{Table: "outbox; drop table users"})
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), "Table") {
			t.Fatalf("New = %v", err)
		}
	})
	t.Run("DeadDatabase", func(t *testing.T) {
		start := time.Now()
		_, err := postgres.New(ctx, postgres.Config{Host: "127.0.0.1", Port: 1, User: "u", Password: "s3cret", ConnectTimeout: 500 * time.Millisecond})
		if err == nil || !strings.HasPrefix(err.Error(), "postgres: connect to 127.0.0.1:1") || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("New = %v", err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("New took %v with a 500ms ConnectTimeout", time.Since(start))
		}
	})
	t.Run("ClosedPool", func(t *testing.T) {
		pool := adminPool(t)
		schema := newSchema(t)
		p, err := pgxpool.New(ctx, testURL())
		if err != nil {
			t.Fatal(err)
		}
		s, err := postgres.New(ctx, postgres.Config{Pool: p, Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		p.Close()
		_, err = s.Claim(ctx, outbox.ClaimRequest{Token: "r", Limit: 1, Lease: time.Second})
		if err == nil || !strings.HasPrefix(err.Error(), "postgres: claim:") || !strings.Contains(err.Error(), "closed pool") {
			t.Fatalf("claim on a closed pool = %v", err)
		}
		_ = pool
	})
}

func TestBadMessages(t *testing.T) {
	s, _ := newStore(t, func(c *postgres.Config) { c.MaxPayloadBytes = 1024 })
	ctx := context.Background()
	tests := []struct {
		name  string
		m     *outbox.Message
		field string
	}{
		{"invalid JSON", &outbox.Message{Type: "T", Payload: []byte(`{"a":`)}, "payload"},
		{"oversized", &outbox.Message{Type: "T", Payload: []byte(`"` + strings.Repeat("x", 1100) + `"`)}, "payload"},
		{"empty type", &outbox.Message{Payload: []byte(`1`)}, "type"},
		{"bad result", &outbox.Message{Type: "T", Payload: []byte(`1`), Result: []byte(`nope`)}, "result"},
		{"bad id", &outbox.Message{ID: "42", Type: "T", Payload: []byte(`1`)}, "id"},
		{"nil", nil, "message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := s.Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(ctx) }()
			err = s.Add(ctx, tx, msg(t, "GOOD", "", 1), tt.m)
			var fe *outbox.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.HasPrefix(err.Error(), "postgres: add:") {
				t.Fatalf("Add = %v, want a FieldError on %s", err, tt.field)
			}
		})
	}
	if got := claim(t, s, "r", 10, false); len(got) != 0 {
		t.Fatalf("a batch with a bad message stored %v", ids(got))
	}
}

// Default slot names are valid slot names, distinct per table, whatever the table's name.
func TestWALDefaultSlotNames(t *testing.T) {
	seen := map[string]string{}
	for _, c := range [][2]string{{"public", "outbox"}, {"Public", "outbox"}, {"public", "Outbox"}, {"public", strings.Repeat("t", 63)}, {strings.Repeat("s", 63), "outbox"}} {
		sql, err := postgres.WALSQL(postgres.Config{Schema: c[0], Table: c[1], WAL: &postgres.WALConfig{}})
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		slot := sql[strings.Index(sql, "slot('")+6:]
		slot = slot[:strings.Index(slot, "'")]
		if len(slot) > 63 || strings.ToLower(slot) != slot {
			t.Errorf("%v: slot %q is not a valid slot name", c, slot)
		}
		if other, dup := seen[slot]; dup {
			t.Errorf("%v and %s share slot %q", c, other, slot)
		}
		seen[slot] = fmt.Sprint(c)
	}
	if _, err := postgres.WALSQL(postgres.Config{}); err == nil {
		t.Error("WALSQL of a table-mode config gave no error")
	}
}

func TestSchemaSQL(t *testing.T) {
	ddl, err := postgres.SchemaSQL("app", "events")
	if err != nil || !strings.Contains(ddl, `CREATE TABLE IF NOT EXISTS "app"."events"`) {
		t.Fatalf("SchemaSQL = %q, %v", ddl, err)
	}
	if _, err := postgres.SchemaSQL("app", "outbox; drop table users"); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Fatalf("SchemaSQL accepted an injected table name: %v", err)
	}
	if _, err := postgres.SchemaSQL("", "outbox"); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Fatalf("SchemaSQL accepted an empty schema: %v", err)
	}
	// The DDL works as a migration, twice, and creates what the store needs.
	pool := adminPool(t)
	schema := newSchema(t)
	long := strings.Repeat("t", 63)
	ddl, err = postgres.SchemaSQL(schema, long)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := pool.Exec(context.Background(), ddl); err != nil {
			t.Fatalf("apply DDL: %v", err)
		}
	}
	var indexes int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = $2", schema, long).Scan(&indexes); err != nil || indexes != 5 {
		t.Fatalf("%d indexes on a 63-char table (%v), want 5: names must not collide when truncated", indexes, err)
	}
}

func TestEnsureSchemaConcurrent(t *testing.T) {
	// A schema that does not exist yet: EnsureSchema creates it, eight times at once.
	schema := newSchema(t) + "_new"
	admin := adminPool(t)
	ctx := context.Background()
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`) })

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			s, err := postgres.New(ctx, postgres.Config{URL: testURL(), Schema: schema, MaxConns: 1})
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			errs <- s.EnsureSchema(ctx) // creates the schema too
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent EnsureSchema: %v", err)
		}
	}
	s := openStore(t, postgres.Config{URL: testURL(), Schema: schema})
	add(t, s, msg(t, "T", "", 1))
}
