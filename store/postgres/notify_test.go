package postgres_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/outbox/store/postgres"
)

func expectSignal(t *testing.T, ch <-chan struct{}, within time.Duration, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
	case <-time.After(within):
		t.Fatalf("%s: no signal within %v", what, within)
	}
}

func expectQuiet(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: unexpected signal", what)
	case <-time.After(d):
	}
}

func TestNotifyOnCommitOnly(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	signals, err := s.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, signals, 100*time.Millisecond, "idle listener")

	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, tx, msg(t, "T", "", 1)); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, signals, 150*time.Millisecond, "before commit")
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, signals, 150*time.Millisecond, "after rollback")

	add(t, s, msg(t, "T", "", 2))
	expectSignal(t, signals, 2*time.Second, "after commit")

	cancel()
	select {
	case _, ok := <-signals:
		if ok {
			// A signal may have been pending; the close must follow.
			if _, ok := <-signals; ok {
				t.Fatal("channel still open after ctx ended")
			}
		}
	case <-time.After(2 * time.Second):
		t.Fatal("channel not closed after ctx ended")
	}
}

// When the listening connection dies (a database restart looks the same to the client), the
// notifier reconnects, signals once because notifications may have been missed, and hears
// later commits again.
func TestNotifyReconnects(t *testing.T) {
	s, _ := newStore(t, nil)
	admin := adminPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals, err := s.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listenSQL := "LISTEN " + pgx.Identifier{s.Channel()}.Sanitize()
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = $1`, listenSQL).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listener backend(s), %v; want 1", killed, err)
	}
	expectSignal(t, signals, 5*time.Second, "after reconnect")

	// The new connection is listening once its LISTEN shows up.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		_ = admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query = $1`, listenSQL).Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("listener did not reconnect")
		}
		time.Sleep(20 * time.Millisecond)
	}
	add(t, s, msg(t, "T", "", 1))
	expectSignal(t, signals, 2*time.Second, "commit after reconnect")
}

// Close ends every listener, and its channel is closed.
func TestCloseStopsListeners(t *testing.T) {
	s, _ := newStore(t, nil)
	signals, err := s.Listen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range signals { // drain until closed
	}
}

// Writes within NotifyInterval of a notifying write skip their own NOTIFY; a trailing one
// covers them, so the relay still wakes for the last write of a burst.
func TestNotifyIntervalTrailingSignal(t *testing.T) {
	s, _ := newStore(t, func(c *postgres.Config) { c.NotifyInterval = time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals, err := s.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	add(t, s, msg(t, "FIRST", "", 1))
	expectSignal(t, signals, 2*time.Second, "first write")
	start := time.Now()
	add(t, s, msg(t, "SKIPPED", "", 2)) // within the interval: no NOTIFY in its transaction
	expectQuiet(t, signals, 500*time.Millisecond, "skipped write before the trailing signal")
	expectSignal(t, signals, 3*time.Second, "trailing signal")
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Fatalf("trailing signal after %v, want about the interval (1s)", waited)
	}
}

// A listener the server refuses (here: a database that does not exist) fails at once, so the
// relay logs it and polls, instead of retrying a hopeless login forever.
func TestListenRefused(t *testing.T) {
	u, err := url.Parse(testURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/no_such_database_for_outbox"
	s, _ := newStore(t, func(c *postgres.Config) { c.ListenURL = u.String() })
	if _, err := s.Listen(context.Background()); err == nil || !strings.HasPrefix(err.Error(), "postgres: listen:") {
		t.Fatalf("Listen = %v, want the server's refusal", err)
	}
}
