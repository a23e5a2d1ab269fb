package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/sqlite"
)

func TestCheckSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "app.db")
	open := func(table string) *sqlite.Store {
		s, err := sqlite.New(ctx, sqlite.Config{Path: path, Table: table})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	s := open("outbox")
	if err := s.CheckSchema(ctx); !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "outbox does not exist: create it with `outbox migrate`") {
		t.Fatalf("before EnsureSchema: %v, want the missing table named with what to run", err)
	}
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("after EnsureSchema: %v", err)
	}
	if _, err := s.DB().ExecContext(ctx, "CREATE TABLE events (id TEXT, status TEXT)"); err != nil {
		t.Fatal(err)
	}
	err := open("events").CheckSchema(ctx)
	if !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "events is not an outbox table (no column seq, type, key,") {
		t.Fatalf("a foreign table: %v, want the columns it lacks", err)
	}
}
