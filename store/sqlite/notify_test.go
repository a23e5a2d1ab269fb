package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/sqlite"
)

func expectSignal(t *testing.T, signals <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-signals:
	case <-time.After(5 * time.Second):
		t.Fatalf("no notification after %s", what)
	}
}

func expectQuiet(t *testing.T, signals <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-signals:
		t.Fatalf("%s sent a notification", what)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestNotifyOnCommitOfBareAdd(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	s := open(t, sqlite.Config{Path: path})
	other := open(t, sqlite.Config{Path: path})                  // a second store on the same outbox
	elsewhere := open(t, sqlite.Config{Path: path, Table: "t2"}) // another outbox in the same file
	signals, err := other.Listen(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	quiet, err := elsewhere.Listen(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := msg("T", "")
	if err := s.Add(ctx, tx, m); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, signals, "an uncommitted Add")
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	expectSignal(t, signals, "a committed Add")
	expectQuiet(t, quiet, "a commit to another table")

	// The relay's own writes (claim, ack, nack) and business writes without events stay quiet,
	// or an idle relay would wake itself forever.
	got := claim(t, other, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute})
	if _, err := other.Nack(ctx, "o", []outbox.Failure{{ID: got[0].ID, Error: "x", Delay: 0}}); err != nil {
		t.Fatal(err)
	}
	got = claim(t, other, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute})
	if _, err := other.Ack(ctx, "o", []string{got[0].ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec(`CREATE TABLE business (x); INSERT INTO business VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, signals, "claim, nack, ack and a business write")

	// A rolled-back Add stays quiet, and does not leave a signal armed for the next commit.
	tx, err = s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, tx, msg("T", "")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec(`INSERT INTO business VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, signals, "a rolled-back Add")

	// Requeue makes messages due now, so it wakes the relay too.
	add(t, s, msg("T", ""))
	expectSignal(t, signals, "a second Add")
	got = claim(t, s, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute})
	if _, err := s.Nack(ctx, "o", []outbox.Failure{{ID: got[0].ID, Error: "x", Dead: true}}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Requeue(ctx, outbox.DeadFilter{}); err != nil || n != 1 {
		t.Fatalf("requeue = %d, %v", n, err)
	}
	expectSignal(t, signals, "a requeue")
}

// A woken claimer must see what woke it: the hook fires inside COMMIT, while the writer still
// holds the write lock, and the claim (a write) waits for that lock.
func TestSignalledCommitIsVisible(t *testing.T) {
	for _, conns := range []int{1, 4} {
		path := filepath.Join(t.TempDir(), "x.db")
		writer := open(t, sqlite.Config{Path: path, MaxOpenConns: conns})
		relay := open(t, sqlite.Config{Path: path, MaxOpenConns: conns})
		signals, err := relay.Listen(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			done := make(chan []*outbox.Message)
			go func() {
				<-signals
				got, err := relay.Claim(context.Background(), outbox.ClaimRequest{Token: "r", Limit: 10, Lease: time.Minute})
				if err != nil {
					t.Error(err)
				}
				done <- got
			}()
			add(t, writer, msg("T", ""))
			if got := <-done; len(got) != 1 {
				t.Fatalf("conns %d, write %d: the woken claim found %d messages, want 1", conns, i, len(got))
			}
		}
	}
}

func TestListenEndsWithContext(t *testing.T) {
	s := open(t, sqlite.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	signals, err := s.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, open := <-signals:
		if open {
			<-signals // a signal raced the cancel; the close follows
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after its context ended")
	}
	// A write after the listener left must not panic on a closed channel.
	_, err = sqlite.Execute(context.Background(), s, func(context.Context, *sql.Tx) (any, error) { return nil, nil }, msg("T", ""))
	if err != nil {
		t.Fatal(err)
	}
}
