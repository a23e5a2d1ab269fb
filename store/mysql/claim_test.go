package mysql

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

// Claim transactions run at READ COMMITTED, seen by what they read: a row committed by another
// connection between two reads of one transaction shows in the second (at REPEATABLE READ it
// would not). Neither @@tx_isolation (MariaDB) nor @@transaction_isolation (MySQL) can tell:
// both show the session's default, not what SET TRANSACTION chose for this one, and the
// transaction's own level (information_schema.innodb_trx) needs the PROCESS privilege.
func TestClaimRunsAtReadCommitted(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	count := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) (n int) {
		if err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var before, after int
	err := s.tryTx(ctx, func(tx *sql.Tx) error {
		before = count(tx)
		if _, err := Execute(ctx, s, func(context.Context, *sql.Tx) (int, error) { return 0, nil }, &outbox.Message{Type: "T", Payload: []byte("{}")}); err != nil {
			return err
		}
		after = count(tx)
		return nil
	})
	if err != nil || before != 0 || after != 1 {
		t.Fatalf("a claim transaction saw %d then %d rows (%v); at READ COMMITTED it sees the commit between", before, after, err)
	}
}

// A dropped table gives an error that says how to create it, from every side of the store.
func TestMissingTableSaysHowToCreateIt(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	if _, err := s.DB().ExecContext(ctx, "DROP TABLE "+s.table); err != nil {
		t.Fatal(err)
	}
	_, claimErr := s.Claim(ctx, outbox.ClaimRequest{Token: "t", Limit: 1, Lease: time.Second})
	_, countErr := s.Counts(ctx)
	_, addErr := Execute(ctx, s, func(context.Context, *sql.Tx) (int, error) { return 1, nil }, &outbox.Message{Type: "T", Payload: []byte("{}")})
	for op, err := range map[string]error{"claim": claimErr, "counts": countErr, "execute": addErr} {
		if err == nil || !strings.Contains(err.Error(), "EnsureSchema") || !strings.HasPrefix(err.Error(), "mysql: ") {
			t.Errorf("%s on a dropped table: %v", op, err)
		}
	}
}

// CheckSchema, which the relay's Start runs, tells a missing table and another table of the
// same name from the outbox's, as *outbox.SchemaError.
func TestCheckSchemaNamesMissingAndForeignTables(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("the outbox's own table: %v", err)
	}
	if _, err := s.DB().ExecContext(ctx, "DROP TABLE "+s.table); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "does not exist: create it with `outbox migrate`") {
		t.Fatalf("a dropped table: %v", err)
	}
	if _, err := s.DB().ExecContext(ctx, "CREATE TABLE "+s.table+" (id INT PRIMARY KEY, status TEXT)"); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "is not an outbox table (no column seq, type, msg_key,") {
		t.Fatalf("a foreign table: %v", err)
	}
}

func TestClaimRefusesLongToken(t *testing.T) {
	s := testStore(t)
	_, err := s.Claim(context.Background(), outbox.ClaimRequest{Token: strings.Repeat("x", maxTokenLength+1), Limit: 1, Lease: time.Second})
	if err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("claim with a 256-byte token = %v", err)
	}
}

// An ordered claim takes only a key's head run even when the head sits behind a long queue of
// another key's blocked rows: a due key further on is not starved.
func TestOrderedClaimFindsKeysBehindABlockedBacklog(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	add := func(key string, n int) []*outbox.Message {
		var msgs []*outbox.Message
		for range n {
			msgs = append(msgs, &outbox.Message{Type: "T", Key: key, Payload: []byte("{}")})
		}
		if _, err := Execute(ctx, s, func(context.Context, *sql.Tx) (int, error) { return 0, nil }, msgs...); err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	busy := add("busy", 500)
	late := add("late", 2)
	req := outbox.ClaimRequest{Token: "a", Limit: 1, Lease: time.Minute, Ordered: true}
	if got, err := s.Claim(ctx, req); err != nil || len(got) != 1 || got[0].ID != busy[0].ID {
		t.Fatalf("first claim = %v, %v", got, err)
	}
	req.Token, req.Limit = "b", 10
	got, err := s.Claim(ctx, req)
	if err != nil || len(got) != 2 || got[0].ID != late[0].ID || got[1].ID != late[1].ID {
		t.Fatalf("claim behind the busy key's leased head = %d messages, %v; want the late key's 2", len(got), err)
	}
}
