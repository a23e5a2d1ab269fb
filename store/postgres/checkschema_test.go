package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

func TestCheckSchema(t *testing.T) {
	ctx := context.Background()
	schema := newSchema(t)
	open := func(table string) *postgres.Store {
		s, err := postgres.New(ctx, postgres.Config{URL: testURL(), Schema: schema, Table: table})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	s := open("outbox")
	if err := s.CheckSchema(ctx); !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "does not exist: create it with `outbox migrate`") {
		t.Fatalf("before EnsureSchema: %v, want the missing table named with what to run", err)
	}
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("after EnsureSchema: %v", err)
	}
	if _, err := adminPool(t).Exec(ctx, "CREATE TABLE "+pgx.Identifier{schema, "events"}.Sanitize()+" (id uuid, status text, payload jsonb)"); err != nil {
		t.Fatal(err)
	}
	err := open("events").CheckSchema(ctx)
	if !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "is not an outbox table (no column seq, type, key,") {
		t.Fatalf("a foreign table: %v, want the columns it lacks", err)
	}
}
