package mysql

import (
	"context"
	"errors"
	"testing"

	"database/sql"

	"github.com/txoutbox/outbox"
)

func TestAddAndExecute(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	count := func() (n int) {
		if err := s.DB().QueryRowContext(ctx, "SELECT count(*) FROM "+s.table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	newMsg := func(key string) *outbox.Message {
		m, err := outbox.NewMessage("T", map[string]int{"n": 1})
		if err != nil {
			t.Fatal(err)
		}
		m.Key = key
		return m
	}
	if _, err := Execute(ctx, s, func(ctx context.Context, tx *sql.Tx) (int, error) { return 7, nil }, newMsg("a"), newMsg("b"), newMsg("a"), newMsg("")); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 4 {
		t.Fatalf("%d rows after Execute, want 4", n)
	}
	boom := errors.New("boom")
	if _, err := Execute(ctx, s, func(ctx context.Context, tx *sql.Tx) (int, error) { return 0, boom }, newMsg("a")); !errors.Is(err, boom) {
		t.Fatalf("Execute = %v, want boom", err)
	}
	bad := newMsg("a")
	bad.Payload = []byte("{not json")
	if _, err := Execute(ctx, s, func(ctx context.Context, tx *sql.Tx) (int, error) { return 1, nil }, newMsg("c"), bad); !errors.Is(err, outbox.ErrInvalidMessage) {
		t.Fatalf("Execute with a bad message = %v, want ErrInvalidMessage", err)
	}
	if n := count(); n != 4 {
		t.Fatalf("%d rows after failed Executes, want 4 (nothing half-written)", n)
	}
	var result string
	if err := s.DB().QueryRowContext(ctx, "SELECT result FROM "+s.table+" ORDER BY seq LIMIT 1").Scan(&result); err != nil || result != "7" {
		t.Fatalf("result = %q, %v; want 7", result, err)
	}
}

// A second writer of one key waits for the first to end, so its row gets the later seq. A
// one-key Add is one INSERT, its lock taken by the table's trigger: this fails without it.
func TestAddSerialisesWritersOfOneKey(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	msg := func() *outbox.Message {
		m, err := outbox.NewMessage("T", 1)
		if err != nil {
			t.Fatal(err)
		}
		m.Key = "k"
		return m
	}
	first, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback()
	if err := s.Add(ctx, first, msg()); err != nil {
		t.Fatal(err)
	}
	second, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Rollback()
	if _, err := second.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = 1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, second, msg()); err == nil {
		t.Fatal("a second writer of the key did not wait for the first")
	}
}
