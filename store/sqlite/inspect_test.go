package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/sqlite"
)

// kill claims msgs and dead-letters them with reason.
func kill(t *testing.T, s *sqlite.Store, reason string, msgs ...*outbox.Message) {
	t.Helper()
	add(t, s, msgs...)
	got := claim(t, s, outbox.ClaimRequest{Token: "k", Limit: len(msgs), Lease: time.Minute})
	var fs []outbox.Failure
	for _, m := range got {
		fs = append(fs, outbox.Failure{ID: m.ID, Error: reason, Dead: true})
	}
	if _, err := s.Nack(context.Background(), "k", fs); err != nil {
		t.Fatal(err)
	}
}

func TestDeadLetterFilters(t *testing.T) {
	ctx := context.Background()
	s := open(t, sqlite.Config{})
	a1, a2, b1 := msg("A", "k1"), msg("A", "k2"), msg("B", "k1")
	kill(t, s, "first", a1)
	kill(t, s, "second", a2, b1)

	list := func(f outbox.DeadFilter) []string {
		t.Helper()
		dead, err := s.ListDead(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range dead {
			ids = append(ids, d.ID)
		}
		return ids
	}
	same := func(what string, got []string, want ...*outbox.Message) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %v, want %d", what, got, len(want))
		}
		for i := range got {
			if got[i] != want[i].ID {
				t.Fatalf("%s: %v, want oldest first", what, got)
			}
		}
	}
	same("all", list(outbox.DeadFilter{}), a1, a2, b1)
	same("type", list(outbox.DeadFilter{Type: "A"}), a1, a2)
	same("key", list(outbox.DeadFilter{Key: "k1"}), a1, b1)
	same("ids", list(outbox.DeadFilter{IDs: []string{b1.ID, a1.ID}}), a1, b1)
	same("type and key", list(outbox.DeadFilter{Type: "A", Key: "k1"}), a1)
	same("limit", list(outbox.DeadFilter{Limit: 2}), a1, a2)
	same("unknown id", list(outbox.DeadFilter{IDs: []string{"nope"}}))

	dead, _ := s.ListDead(ctx, outbox.DeadFilter{IDs: []string{a1.ID}})
	if d := dead[0]; d.LastError != "first" || d.Attempts != 1 || d.Type != "A" || d.Key != "k1" || d.DiedAt.IsZero() {
		t.Fatalf("dead letter = %+v", d)
	}

	// Requeue and purge honour the filter and its limit, oldest first.
	if n, err := s.Requeue(ctx, outbox.DeadFilter{Type: "A", Limit: 1}); err != nil || n != 1 {
		t.Fatalf("requeue = %d, %v", n, err)
	}
	back := claim(t, s, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute})
	if len(back) != 1 || back[0].ID != a1.ID || back[0].Attempts != 0 {
		t.Fatalf("after requeue claimed %+v, want %s with attempts reset", back, a1.ID)
	}
	if n, err := s.Purge(ctx, outbox.DeadFilter{Key: "k1"}); err != nil || n != 1 {
		t.Fatalf("purge = %d, %v", n, err)
	}
	same("after purge", list(outbox.DeadFilter{}), a2)

	for name, call := range map[string]func() error{
		"list":    func() error { _, err := s.ListDead(ctx, outbox.DeadFilter{Limit: -1}); return err },
		"requeue": func() error { _, err := s.Requeue(ctx, outbox.DeadFilter{Limit: -1}); return err },
		"purge":   func() error { _, err := s.Purge(ctx, outbox.DeadFilter{Limit: -1}); return err },
		"retention": func() error {
			_, err := s.DeleteDelivered(ctx, time.Hour, 0)
			return err
		},
	} {
		if err := call(); !errors.Is(err, outbox.ErrInvalidConfig) && !errors.Is(err, outbox.ErrInvalidArgument) {
			t.Errorf("%s with a bad limit: %v", name, err)
		}
	}
}

func TestSettleOnlyByLeaseOwner(t *testing.T) {
	ctx := context.Background()
	s := open(t, sqlite.Config{KeepDelivered: true})
	m := msg("T", "")
	add(t, s, m)
	claim(t, s, outbox.ClaimRequest{Token: "holder", Limit: 1, Lease: time.Minute})
	if _, err := s.Ack(ctx, "thief", []string{m.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Nack(ctx, "thief", []outbox.Failure{{ID: m.ID, Error: "x", Dead: true}}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Counts(ctx); c.Pending != 1 || c.Dead != 0 || c.Delivered != 0 {
		t.Fatalf("another owner's settle counted: %+v", c)
	}
	_, ackErr := s.Ack(ctx, "", []string{m.ID})
	_, nackErr := s.Nack(ctx, "", []outbox.Failure{{ID: m.ID}})
	for _, err := range []error{ackErr, nackErr} {
		if !errors.Is(err, outbox.ErrInvalidArgument) {
			t.Fatalf("empty token: %v", err)
		}
	}
	if _, err := s.Ack(ctx, "holder", []string{m.ID, "unknown-id"}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Counts(ctx); c.Delivered != 1 {
		t.Fatalf("holder's ack not counted: %+v", c)
	}
}

func TestAddThroughAnotherDB(t *testing.T) {
	// The business side may have its own pool over the same file; Add works on its transactions.
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	s := open(t, sqlite.Config{Path: path})
	db, err := sql.Open("sqlite", sqlite.DSN(path, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := msg("T", "")
	if err := s.Add(ctx, tx, m); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, outbox.ClaimRequest{Token: "o", Limit: 1, Lease: time.Minute}); len(got) != 1 || got[0].ID != m.ID {
		t.Fatalf("claimed %v", got)
	}
}
