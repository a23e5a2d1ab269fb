package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/sqlite"
)

func msg(typ, key string) *outbox.Message {
	return &outbox.Message{Type: typ, Key: key, Payload: json.RawMessage(`{"ok":true}`)}
}

// add writes msgs with the bare Add in a transaction of the store's own database.
func add(t testing.TB, s *sqlite.Store, msgs ...*outbox.Message) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, tx, msgs...); err != nil {
		_ = tx.Rollback()
		t.Fatalf("add: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func claim(t testing.TB, s *sqlite.Store, req outbox.ClaimRequest) []*outbox.Message {
	t.Helper()
	got, err := s.Claim(context.Background(), req)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return got
}

func count(t testing.TB, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
