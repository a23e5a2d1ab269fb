package postgres_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

// Nothing of a rolled-back transaction is published, nor of a rolled-back savepoint inside a
// committed one (the WAL mode's messages belong to the subtransaction that wrote them).
func TestRolledBackPublishesNothing(t *testing.T) {
	t.Run("Table", func(t *testing.T) {
		s, _ := newStore(t, nil)
		checkRolledBack(t, s)
	})
	t.Run("WAL", func(t *testing.T) {
		s, _ := newWALStore(t, nil)
		checkRolledBack(t, s)
	})
}

func checkRolledBack(t *testing.T, s *postgres.Store) {
	ctx := context.Background()
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, tx, msg(t, "T", "", 1)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	kept, dropped := msg(t, "KEPT", "", 2), msg(t, "DROPPED", "", 3)
	err = pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
		if err := s.Add(ctx, tx, kept); err != nil {
			return err
		}
		sp, err := tx.Begin(ctx) // a savepoint
		if err != nil {
			return err
		}
		if err := s.Add(ctx, sp, dropped); err != nil {
			return err
		}
		return sp.Rollback(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	syncStore(t, s)
	if got := claim(t, s, "r", 10, false); len(got) != 1 || got[0].ID != kept.ID {
		t.Fatalf("claimed %v, want only the message outside the rolled-back savepoint (%s)", ids(got), kept.ID)
	}
}

type order struct {
	ID    int    `json:"id"`
	Total string `json:"total"`
}

func TestExecute(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	if _, err := s.Pool().Exec(ctx, "CREATE TABLE "+pgx.Identifier{schemaOf(s), "orders"}.Sanitize()+" (id int PRIMARY KEY, total text)"); err != nil {
		t.Fatal(err)
	}
	insert := "INSERT INTO " + pgx.Identifier{schemaOf(s), "orders"}.Sanitize() + " VALUES ($1, $2)"

	t.Run("Commit", func(t *testing.T) {
		m := msg(t, "ORDER_CREATED", "order-1", map[string]int{"id": 1})
		got, err := postgres.Execute(ctx, s, func(ctx context.Context, tx pgx.Tx) (order, error) {
			_, err := tx.Exec(ctx, insert, 1, "9.99")
			return order{ID: 1, Total: "9.99"}, err
		}, m)
		if err != nil || got != (order{1, "9.99"}) {
			t.Fatalf("Execute = %+v, %v", got, err)
		}
		claimed := claim(t, s, "r", 10, false)
		if len(claimed) != 1 || claimed[0].ID != m.ID {
			t.Fatalf("claimed %v, want %s", ids(claimed), m.ID)
		}
		var res order
		if err := json.Unmarshal(claimed[0].Result, &res); err != nil || res != got {
			t.Fatalf("stored Result %s (%v), want fn's result %+v", claimed[0].Result, err, got)
		}
		if _, err := s.Ack(ctx, "r", ids(claimed)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ErrorRollsBack", func(t *testing.T) {
		boom := errors.New("business rule")
		_, err := postgres.Execute(ctx, s, func(ctx context.Context, tx pgx.Tx) (int, error) {
			if _, err := tx.Exec(ctx, insert, 2, "1"); err != nil {
				return 0, err
			}
			return 0, boom
		}, msg(t, "T", "", 1))
		if !errors.Is(err, boom) {
			t.Fatalf("Execute error = %v, want fn's", err)
		}
		assertNothingWritten(t, s, 2)
	})

	t.Run("PanicRollsBack", func(t *testing.T) {
		func() {
			defer func() {
				if r := recover(); r != "kaboom" {
					t.Fatalf("recovered %v, want the panic re-raised", r)
				}
			}()
			_, _ = postgres.Execute(ctx, s, func(ctx context.Context, tx pgx.Tx) (int, error) {
				if _, err := tx.Exec(ctx, insert, 3, "1"); err != nil {
					return 0, err
				}
				panic("kaboom")
			}, msg(t, "T", "", 1))
		}()
		assertNothingWritten(t, s, 3)
	})

	t.Run("BadMessageRollsBack", func(t *testing.T) {
		_, err := postgres.Execute(ctx, s, func(ctx context.Context, tx pgx.Tx) (int, error) {
			_, err := tx.Exec(ctx, insert, 4, "1")
			return 0, err
		}, &outbox.Message{Type: "T", Payload: []byte(`{not json`)})
		if !errors.Is(err, outbox.ErrInvalidMessage) {
			t.Fatalf("Execute error = %v, want invalid message", err)
		}
		assertNothingWritten(t, s, 4)
	})

	// Each call holds one connection: with a pool of 2 and 16 concurrent callers, none waits for
	// a second connection while holding the first (the origin package's deadlock).
	t.Run("OneConnectionPerCall", func(t *testing.T) {
		pcfg, err := pgxpool.ParseConfig(testURL())
		if err != nil {
			t.Fatal(err)
		}
		pcfg.MaxConns = 2
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		small, err := postgres.New(ctx, postgres.Config{Pool: pool, Schema: schemaOf(s)})
		if err != nil {
			t.Fatal(err)
		}
		defer small.Close()
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Go(func() {
				_, err := postgres.Execute(ctx, small, func(ctx context.Context, tx pgx.Tx) (int, error) {
					_, err := tx.Exec(ctx, insert, 100+i, "1")
					time.Sleep(10 * time.Millisecond)
					return i, err
				}, msg(t, "T", "", i))
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

func schemaOf(s *postgres.Store) string {
	var schema string
	_ = s.Pool().QueryRow(context.Background(), "SELECT $1::regclass::text", s.Table()).Scan(&schema)
	for i := range schema {
		if schema[i] == '.' {
			return schema[:i]
		}
	}
	return "public"
}

func assertNothingWritten(t *testing.T, s *postgres.Store, orderID int) {
	t.Helper()
	var n int
	err := s.Pool().QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{schemaOf(s), "orders"}.Sanitize()+" WHERE id = $1", orderID).Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("business row %d: count %d, %v; want rolled back", orderID, n, err)
	}
	if got := claim(t, s, "check", 100, false); len(got) != 0 {
		t.Fatalf("messages of a rolled-back Execute were stored: %v", ids(got))
	}
}

func TestAddSQL(t *testing.T) {
	t.Run("Table", func(t *testing.T) {
		s, _ := newStore(t, nil)
		checkAddSQL(t, s)
	})
	t.Run("WAL", func(t *testing.T) {
		s, _ := newWALStore(t, nil)
		checkAddSQL(t, s)
	})
}

func checkAddSQL(t *testing.T, s *postgres.Store) {
	ctx := context.Background()
	db, err := sql.Open("pgx", testURL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = stdlib.GetDefaultDriver()

	in := &outbox.Message{Type: "T", Key: "k", Payload: []byte(`{"x": "y"}`), Result: []byte(`[1]`), Headers: map[string]string{"h": "v"}}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddSQL(ctx, tx, in, msg(t, "T2", "", 2)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	rolled, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddSQL(ctx, rolled, msg(t, "ROLLED", "", 3)); err != nil {
		t.Fatal(err)
	}
	_ = rolled.Rollback()

	syncStore(t, s)
	got := claim(t, s, "r", 10, false)
	if len(got) != 2 || got[0].ID != in.ID || got[1].Type != "T2" {
		t.Fatalf("claimed %+v", got)
	}
	m := got[0]
	if string(m.Payload) != `{"x": "y"}` || string(m.Result) != "[1]" || m.Headers["h"] != "v" || m.Key != "k" || !m.CreatedAt.Equal(in.CreatedAt) {
		t.Fatalf("AddSQL round trip: %+v", m)
	}
}

// A row that commits after a later one was claimed is still found: claims never skip past it.
func TestLateCommitIsClaimed(t *testing.T) {
	eachMode(t, func(t *testing.T, mode pgx.QueryExecMode) {
		s, _ := newStore(t, func(c *postgres.Config) { c.QueryExecMode = mode })
		ctx := context.Background()
		txA, err := s.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = txA.Rollback(ctx) }()
		a, b := msg(t, "A", "", 1), msg(t, "B", "", 2)
		if err := s.Add(ctx, txA, a); err != nil {
			t.Fatal(err)
		}
		add(t, s, b)
		if got := claim(t, s, "r", 10, false); len(got) != 1 || got[0].ID != b.ID {
			t.Fatalf("first claim = %v, want only B", ids(got))
		}
		if _, err := s.Ack(ctx, "r", []string{b.ID}); err != nil {
			t.Fatal(err)
		}
		if err := txA.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if got := claim(t, s, "r", 10, false); len(got) != 1 || got[0].ID != a.ID {
			t.Fatalf("after A commits claim = %v, want A", ids(got))
		}
	})
}
