package mysql

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/txoutbox/outbox"
)

func keyMsg(key string) *outbox.Message {
	return &outbox.Message{Type: "T", Key: key, Payload: []byte("{}")}
}

func keyMsgs(keys ...string) []*outbox.Message {
	var out []*outbox.Message
	for _, k := range keys {
		out = append(out, keyMsg(k))
	}
	return out
}

// questions is the count of statements the client has sent on tx's connection.
func questions(t *testing.T, tx *sql.Tx) int {
	t.Helper()
	var name string
	var n int
	if err := tx.QueryRow("SHOW SESSION STATUS LIKE 'Questions'").Scan(&name, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// An Add whose first message carries its only key (or that has no key) is one statement; one
// with several keys, or a keyless first message before a keyed one, locks its keys first.
func TestAddStatements(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	for _, c := range []struct {
		keys []string
		want int
	}{
		{[]string{"a"}, 1}, {[]string{""}, 1}, {[]string{"", ""}, 1}, {[]string{"a", "a", "a"}, 1},
		{[]string{"a", "", "a"}, 1}, {[]string{"", "a"}, 2}, {[]string{"a", "b"}, 2}, {[]string{"b", "a", "b"}, 2},
	} {
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		before := questions(t, tx)
		if err := s.Add(ctx, tx, keyMsgs(c.keys...)...); err != nil {
			t.Fatal(err)
		}
		got := questions(t, tx) - before - 1 // the second SHOW counts itself
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("Add of keys %q sent %d statements, want %d", c.keys, got, c.want)
		}
	}
}

// The trigger locks the same key row as Add's own lock statement: it hashes the key's bytes
// as Go does, trailing spaces and all, and skips only the empty key.
func TestKeyLockTriggerHashesAsAdd(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	keys := []string{"k", "ключ  ", " ", "k "}
	for _, k := range keys { // one key each: the trigger alone locks
		if _, err := Execute(ctx, s, func(context.Context, *sql.Tx) (int, error) { return 0, nil }, keyMsg(k)); err != nil {
			t.Fatal(err)
		}
	}
	// Several keys: Add's own statement locks them, and must find the trigger's rows.
	if _, err := Execute(ctx, s, func(context.Context, *sql.Tx) (int, error) { return 0, nil }, keyMsgs(append(keys, "")...)...); err != nil {
		t.Fatal(err)
	}
	rows, err := s.DB().QueryContext(ctx, "SELECT lock_key, msg_key FROM "+s.keys)
	if err != nil {
		t.Fatal(err)
	}
	got, err := scanKeyRows(rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(keys) {
		t.Fatalf("%d key rows for %d keys: %q", len(got), len(keys), got)
	}
	for _, r := range got {
		if sum := sha256.Sum256([]byte(r.key)); !bytes.Equal(r.lock, sum[:]) {
			t.Errorf("key %q has lock_key %x, want %x", r.key, r.lock, sum)
		}
	}
}

// Without the trigger a one-key Add takes no lock: a second writer of the key does not wait,
// commits first and still has the later seq, so an ordered relay would let the later-committing
// event out first. CheckSchema refuses such a table, naming the statement that fixes it, and
// EnsureSchema puts the trigger back, after which the second writer waits again.
func TestKeyLockTriggerMissing(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	if _, err := s.DB().ExecContext(ctx, "DROP TRIGGER "+s.triggerName()); err != nil {
		t.Fatal(err)
	}
	begin := func() *sql.Tx {
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback() })
		if _, err := tx.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = 1"); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	first, second := begin(), begin()
	a, b := keyMsg("k"), keyMsg("k")
	if err := s.Add(ctx, first, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, second, b); err != nil {
		t.Fatalf("second writer without the trigger: %v, want no wait", err)
	}
	if err := second.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	seq := func(id string) (n int64) {
		if err := s.DB().QueryRowContext(ctx, "SELECT seq FROM "+s.table+" WHERE id = ?", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if seq(a.ID) > seq(b.ID) {
		t.Fatalf("seqs %d, %d: the first writer's should be the lower", seq(a.ID), seq(b.ID))
	}

	var se *outbox.SchemaError
	err := s.CheckSchema(ctx)
	if !errors.As(err, &se) || !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "trigger "+s.triggerName()) ||
		!strings.Contains(err.Error(), triggerSQL(s.table, s.keys, s.triggerName(), false)) {
		t.Fatalf("CheckSchema without the trigger = %v, want a SchemaError naming it and how to create it", err)
	}
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	first, second = begin(), begin()
	if err := s.Add(ctx, first, keyMsg("k")); err != nil {
		t.Fatal(err)
	}
	var me *mysql.MySQLError
	if err := s.Add(ctx, second, keyMsg("k")); !errors.As(err, &me) || me.Number != errLockWait {
		t.Fatalf("second writer with the trigger back: %v, want it to wait for the key", err)
	}
}

// A trigger of that name with another statement is refused; so is SchemaSQL's DDL applied
// twice (it is idempotent, the trigger's statement included).
func TestKeyLockTriggerChecked(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	ddl, err := SchemaSQL(s.cfg.Table)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ddl, "CREATE TRIGGER IF NOT EXISTS "+s.triggerName()) {
		t.Fatalf("SchemaSQL has no trigger:\n%s", ddl)
	}
	for range 2 {
		if _, err := s.DB().ExecContext(ctx, ddl); err != nil {
			t.Fatalf("SchemaSQL again: %v", err)
		}
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, "DROP TRIGGER "+s.triggerName()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, "CREATE TRIGGER "+s.triggerName()+" BEFORE INSERT ON "+s.table+" FOR EACH ROW SET @x = 1"); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "not the key lock") {
		t.Fatalf("CheckSchema with another trigger of the name = %v", err)
	}
	if err := s.EnsureSchema(ctx); !errors.Is(err, outbox.ErrSchema) {
		t.Fatalf("EnsureSchema with another trigger of the name = %v", err)
	}
}

// Writers of one key racing, each with an Add the trigger alone locks (one row, several rows
// of the key, a keyed row then a keyless one) or that locks first (a keyless row then the key):
// no two hold the key at once, and the relay delivers the key in the order they held it.
func TestKeyLockTriggerRacingWritersKeepCommitOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := testStore(t)
	shapes := [][]string{{"k"}, {"k", "k"}, {"k", ""}, {"", "k"}}
	const writers, each = 4, 30
	var ticket, overlaps atomic.Int64
	var inside atomic.Int32
	write := func(shape []string) error {
		for {
			tx, err := s.DB().BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			msgs := keyMsgs(shape...)
			if err := s.Add(ctx, tx, msgs...); err != nil {
				_ = tx.Rollback()
				if retryable(err) {
					continue
				}
				return err
			}
			if inside.Add(1) > 1 {
				overlaps.Add(1)
			}
			n := ticket.Add(1)
			for _, m := range msgs {
				if m.Key != "" {
					if _, err := tx.ExecContext(ctx, "UPDATE "+s.table+" SET payload = ? WHERE id = ?", n, m.ID); err != nil {
						inside.Add(-1)
						_ = tx.Rollback()
						return err
					}
				}
			}
			inside.Add(-1)
			return tx.Commit()
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := write(shapes[(w+i)%len(shapes)]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if overlaps.Load() > 0 {
		t.Fatalf("%d times two writers of the key held it at once", overlaps.Load())
	}
	// In seq order, the key's tickets never go down: seq order is the order the key was held.
	rows, err := s.DB().QueryContext(ctx, "SELECT CAST(payload AS SIGNED) FROM "+s.table+" WHERE msg_key = 'k' ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var last, n int64
	for rows.Next() {
		var got int64
		if err := rows.Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got < last {
			t.Fatalf("row %d of the key holds ticket %d after %d: seq order is not the order of the commits", n, got, last)
		}
		last, n = got, n+1
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var want int64
	for w := range writers {
		for i := range each {
			want += int64(strings.Count(strings.Join(shapes[(w+i)%len(shapes)], ","), "k"))
		}
	}
	if n != want {
		t.Fatalf("%d rows of the key, want %d", n, want)
	}
}
