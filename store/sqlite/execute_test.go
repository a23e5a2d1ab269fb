package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/store/sqlite"
)

type user struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

func usersStore(t *testing.T, cfg sqlite.Config) *sqlite.Store {
	t.Helper()
	s := open(t, cfg)
	if _, err := s.DB().Exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	return s
}

func insertUser(name string) func(ctx context.Context, tx *sql.Tx) (user, error) {
	return func(ctx context.Context, tx *sql.Tx) (user, error) {
		u := user{Name: name}
		err := tx.QueryRowContext(ctx, `INSERT INTO users (name) VALUES (?) RETURNING id`, name).Scan(&u.ID)
		return u, err
	}
}

func TestExecuteCommits(t *testing.T) {
	s := usersStore(t, sqlite.Config{})
	ctx := context.Background()
	own := &outbox.Message{Type: "AUDIT", Payload: json.RawMessage(`{}`), Result: json.RawMessage(`{"mine":1}`)}
	event := msg("USER_CREATED", "")
	u, err := sqlite.Execute(ctx, s, insertUser("ada"), event, own)
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	if u.ID == 0 || u.Name != "ada" {
		t.Fatalf("execute returned %+v, want fn's user", u)
	}
	if event.ID == "" || event.CreatedAt.IsZero() {
		t.Fatalf("execute did not assign ID and CreatedAt: %+v", event)
	}
	got := claim(t, s, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute})
	if len(got) != 2 || got[0].ID != event.ID || got[1].ID != own.ID {
		t.Fatalf("claimed %v, want the two events in write order", got)
	}
	var want json.RawMessage
	want, _ = json.Marshal(u)
	if string(got[0].Result) != string(want) {
		t.Fatalf("Result = %s, want fn's result %s", got[0].Result, want)
	}
	if string(got[1].Result) != `{"mine":1}` {
		t.Fatalf("a message's own Result was replaced: %s", got[1].Result)
	}
	if n := count(t, s.DB(), `SELECT count(*) FROM users`); n != 1 {
		t.Fatalf("%d users, want 1", n)
	}
	if !got[0].CreatedAt.Equal(event.CreatedAt) {
		t.Fatalf("CreatedAt %v did not round-trip as %v", got[0].CreatedAt, event.CreatedAt)
	}
}

func TestExecuteRollsBack(t *testing.T) {
	ctx := context.Background()
	s := usersStore(t, sqlite.Config{})
	signals, err := s.Listen(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	noSignal := func(what string) {
		t.Helper()
		select {
		case <-signals:
			t.Fatalf("%s sent a notification", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
	nothingStored := func(what string) {
		t.Helper()
		if n := count(t, s.DB(), `SELECT count(*) FROM users`); n != 0 {
			t.Fatalf("%s: %d users stored, want none", what, n)
		}
		if got := claim(t, s, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute}); len(got) != 0 {
			t.Fatalf("%s: %d events claimable, want none", what, len(got))
		}
		noSignal(what)
	}

	t.Run("FnError", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := sqlite.Execute(ctx, s, func(ctx context.Context, tx *sql.Tx) (user, error) {
			if _, err := insertUser("bob")(ctx, tx); err != nil {
				return user{}, err
			}
			return user{}, boom
		}, msg("USER_CREATED", ""))
		if !errors.Is(err, boom) {
			t.Fatalf("error = %v, want fn's error", err)
		}
		nothingStored("a failed fn")
	})
	t.Run("Panic", func(t *testing.T) {
		func() {
			defer func() {
				if r := recover(); r != "kaboom" {
					t.Fatalf("recovered %v, want the panic re-raised", r)
				}
			}()
			_, _ = sqlite.Execute(ctx, s, func(ctx context.Context, tx *sql.Tx) (user, error) {
				if _, err := insertUser("carol")(ctx, tx); err != nil {
					t.Error(err)
				}
				panic("kaboom")
			}, msg("USER_CREATED", ""))
		}()
		nothingStored("a panicking fn")
		// The connection went back to the pool clean: the next Execute works.
		if _, err := sqlite.Execute(ctx, s, insertUser("dan"), msg("USER_CREATED", "")); err != nil {
			t.Fatalf("execute after a panic: %v", err)
		}
		if _, err := s.DB().Exec(`DELETE FROM users`); err != nil {
			t.Fatal(err)
		}
		got := claim(t, s, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute})
		if _, err := s.Ack(ctx, "o", []string{got[0].ID}); err != nil {
			t.Fatal(err)
		}
		<-signals
	})
	t.Run("InvalidEvent", func(t *testing.T) {
		_, err := sqlite.Execute(ctx, s, insertUser("erin"), msg("USER_CREATED", ""), &outbox.Message{Type: "X", Payload: json.RawMessage(`{"a":`)})
		if !errors.Is(err, outbox.ErrInvalidMessage) || !strings.Contains(err.Error(), "payload") {
			t.Fatalf("error = %v, want the invalid payload named", err)
		}
		nothingStored("an invalid event")
	})
	t.Run("UnencodableResult", func(t *testing.T) {
		_, err := sqlite.Execute(ctx, s, func(ctx context.Context, tx *sql.Tx) (func(), error) {
			_, err := insertUser("fay")(ctx, tx)
			return func() {}, err
		}, msg("USER_CREATED", ""))
		if err == nil || !strings.HasPrefix(err.Error(), "sqlite: execute: result as JSON") {
			t.Fatalf("error = %v, want the result named", err)
		}
		nothingStored("an unencodable result")
	})
	t.Run("Cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		_, err := sqlite.Execute(cctx, s, func(ctx context.Context, tx *sql.Tx) (user, error) {
			u, err := insertUser("gus")(ctx, tx)
			cancel()
			return u, err
		}, msg("USER_CREATED", ""))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
		nothingStored("a cancelled Execute")
	})
}

func TestWriteBadInput(t *testing.T) {
	ctx := context.Background()
	s := open(t, sqlite.Config{MaxPayloadBytes: 32})
	none := func(ctx context.Context, tx *sql.Tx) (any, error) { return nil, nil }

	t.Run("Oversized", func(t *testing.T) {
		big := &outbox.Message{Type: "T", Payload: json.RawMessage(`"` + strings.Repeat("x", 40) + `"`)}
		_, err := sqlite.Execute(ctx, s, none, big)
		if !errors.Is(err, outbox.ErrInvalidMessage) || !strings.Contains(err.Error(), "exceeds the limit of 32") {
			t.Fatalf("error = %v, want the configured limit", err)
		}
	})
	t.Run("ResultCountsTowardsLimit", func(t *testing.T) {
		_, err := sqlite.Execute(ctx, s, func(context.Context, *sql.Tx) (string, error) {
			return strings.Repeat("r", 30), nil
		}, msg("T", ""))
		if !errors.Is(err, outbox.ErrInvalidMessage) {
			t.Fatalf("error = %v, want the payload plus result refused", err)
		}
	})
	t.Run("NilTx", func(t *testing.T) {
		err := s.Add(ctx, nil, msg("T", ""))
		if !errors.Is(err, outbox.ErrInvalidArgument) || !strings.Contains(err.Error(), "tx is nil") {
			t.Fatalf("error = %v, want tx named", err)
		}
	})
	t.Run("NilFn", func(t *testing.T) {
		_, err := sqlite.Execute[any](ctx, s, nil, msg("T", ""))
		if !errors.Is(err, outbox.ErrInvalidArgument) || !strings.Contains(err.Error(), "fn is nil") {
			t.Fatalf("error = %v, want fn named", err)
		}
	})
	t.Run("NoMessages", func(t *testing.T) {
		if n, err := sqlite.Execute(ctx, s, func(context.Context, *sql.Tx) (int, error) { return 7, nil }); n != 7 || err != nil {
			t.Fatalf("Execute without events = %d, %v", n, err)
		}
	})
	t.Run("WriteHooks", func(t *testing.T) {
		hooked := open(t, sqlite.Config{WriteHooks: []backend.WriteHook{func(_ context.Context, m *outbox.Message) {
			m.Headers = map[string]string{"traceparent": "00-abc-def-01"}
		}}})
		add(t, hooked, msg("T", ""))
		got := claim(t, hooked, outbox.ClaimRequest{Token: "o", Limit: 1, Lease: time.Minute})
		if len(got) != 1 || got[0].Headers["traceparent"] != "00-abc-def-01" {
			t.Fatalf("claimed %+v, want the hook's header", got)
		}
	})
	t.Run("ManyMessagesOneCall", func(t *testing.T) {
		many := open(t, sqlite.Config{})
		var msgs []*outbox.Message
		for range 150 { // more than one INSERT statement's worth
			msgs = append(msgs, msg("T", ""))
		}
		add(t, many, msgs...)
		got := claim(t, many, outbox.ClaimRequest{Token: "o", Limit: 500, Lease: time.Minute})
		if len(got) != 150 {
			t.Fatalf("claimed %d, want 150", len(got))
		}
		for i := range got {
			if got[i].ID != msgs[i].ID {
				t.Fatalf("message %d out of write order", i)
			}
		}
	})
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "x.db")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	signals, err := s.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, open := <-signals; open {
		t.Fatal("Close left a listener open")
	}
	none := func(ctx context.Context, tx *sql.Tx) (any, error) { return nil, nil }
	calls := map[string]func() error{
		"execute":       func() error { _, err := sqlite.Execute(ctx, s, none, msg("T", "")); return err },
		"add":           func() error { return s.Add(ctx, &sql.Tx{}, msg("T", "")) },
		"ensure schema": func() error { return s.EnsureSchema(ctx) },
		"claim": func() error {
			_, err := s.Claim(ctx, outbox.ClaimRequest{Token: "o", Limit: 1, Lease: time.Second})
			return err
		},
		"ack":              func() error { _, err := s.Ack(ctx, "o", []string{"x"}); return err },
		"nack":             func() error { _, err := s.Nack(ctx, "o", []outbox.Failure{{ID: "x"}}); return err },
		"listen":           func() error { _, err := s.Listen(ctx); return err },
		"counts":           func() error { _, err := s.Counts(ctx); return err },
		"list dead":        func() error { _, err := s.ListDead(ctx, outbox.DeadFilter{}); return err },
		"requeue":          func() error { _, err := s.Requeue(ctx, outbox.DeadFilter{}); return err },
		"purge":            func() error { _, err := s.Purge(ctx, outbox.DeadFilter{}); return err },
		"delete delivered": func() error { _, err := s.DeleteDelivered(ctx, time.Hour, 1); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, outbox.ErrClosed) || !strings.HasPrefix(err.Error(), "sqlite: "+name+": ") {
			t.Errorf("%s after Close: %v, want sqlite: %s: ... outbox.ErrClosed", name, err, name)
		}
	}
}

func TestOwnDB(t *testing.T) {
	// The caller's own *sql.DB: the store uses it, never closes it, and signals through Execute
	// and Notify since it cannot hook the caller's connections.
	ctx := context.Background()
	db, err := sql.Open("sqlite", sqlite.DSN(filepath.Join(t.TempDir(), "own.db"), time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := open(t, sqlite.Config{DB: db})
	signals, err := s.Listen(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	none := func(ctx context.Context, tx *sql.Tx) (any, error) { return nil, nil }
	if _, err := sqlite.Execute(ctx, s, none, msg("T", "")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-signals:
	case <-time.After(5 * time.Second):
		t.Fatal("Execute on an own DB did not notify")
	}
	add(t, s, msg("T", ""))
	s.Notify()
	select {
	case <-signals:
	case <-time.After(5 * time.Second):
		t.Fatal("Notify did not notify")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(); err != nil {
		t.Fatalf("Close closed the caller's DB: %v", err)
	}
}

func TestCreatedAtIsKeptButNeverDelays(t *testing.T) {
	s := open(t, sqlite.Config{})
	past, future := msg("T", ""), msg("T", "")
	past.CreatedAt = time.Date(2020, 1, 2, 3, 4, 5, 6_789_000, time.UTC)
	future.CreatedAt = time.Now().Add(time.Hour)
	add(t, s, past, future)
	got := claim(t, s, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute})
	if len(got) != 2 {
		t.Fatalf("claimed %d, want both: a CreatedAt in the future must not delay delivery", len(got))
	}
	if want := past.CreatedAt.Truncate(time.Millisecond); !got[0].CreatedAt.Equal(want) {
		t.Fatalf("CreatedAt = %v, want %v", got[0].CreatedAt, want)
	}
}

func TestExecuteBeforeSchema(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "x.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	none := func(context.Context, *sql.Tx) (any, error) { return nil, nil }
	_, err = sqlite.Execute(ctx, s, none, msg("T", ""))
	if err == nil || !strings.HasPrefix(err.Error(), "sqlite: add: ") || !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("Execute without the table: %v, want sqlite: add: ... no such table", err)
	}
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Execute(ctx, s, none, msg("T", "")); err != nil {
		t.Fatalf("Execute once the table exists: %v", err)
	}
}
