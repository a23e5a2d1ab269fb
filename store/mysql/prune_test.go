package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/txoutbox/outbox"
)

// keyRows returns the keys recorded in the key-lock table.
func keyRows(t *testing.T, s *Store) map[string]bool {
	t.Helper()
	rows, err := s.DB().QueryContext(context.Background(), "SELECT msg_key FROM "+s.keys)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		out[k] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// drain claims and acks every message, ordered.
func drain(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	for i := 0; ; i++ {
		token := fmt.Sprint("drain", i)
		got, err := s.Claim(ctx, outbox.ClaimRequest{Token: token, Limit: 100, Lease: time.Minute, Ordered: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			return
		}
		var ids []string
		for _, m := range got {
			ids = append(ids, m.ID)
		}
		if _, err := s.Ack(ctx, token, ids); err != nil {
			t.Fatal(err)
		}
	}
}

// The prune deletes the rows of keys with no message left, keeps those of keys with pending
// messages, and passes over (without waiting for) a row a writer holds, which still makes the
// key's next writer wait.
func TestPruneKeys(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	addKeyed(t, s, "idle", 2)
	addKeyed(t, s, "held", 1)
	drain(t, s)
	addKeyed(t, s, "busy", 1)
	writer, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Rollback()
	if err := s.Add(ctx, writer, &outbox.Message{Type: "T", Key: "held", Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, n, err := s.prunePage(pctx, nil, prunePage); err != nil || n != 1 {
		t.Fatalf("prune = %d deleted, %v; want 1 (the idle key's row)", n, err)
	}
	if got := keyRows(t, s); len(got) != 2 || !got["busy"] || !got["held"] {
		t.Fatalf("key rows after the prune: %v, want busy and held", got)
	}
	second, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Rollback()
	if _, err := second.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = 1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, second, &outbox.Message{Type: "T", Key: "held", Payload: []byte("{}")}); err == nil {
		t.Fatal("a second writer of the held key did not wait for the first after the prune")
	}
	_ = second.Rollback()
	if err := writer.Commit(); err != nil {
		t.Fatal(err)
	}
	drain(t, s)
	if _, n, err := s.prunePage(ctx, nil, prunePage); err != nil || n != 2 {
		t.Fatalf("prune once every key is done = %d deleted, %v; want 2", n, err)
	}
	// The next write of a pruned key makes its row again.
	addKeyed(t, s, "idle", 1)
	if got := keyRows(t, s); len(got) != 1 || !got["idle"] {
		t.Fatalf("key rows after writing a pruned key: %v", got)
	}
}

// A sweep goes page by page, one page per claim once it is due.
func TestPruneRunsOnTheClaimPath(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	for i := range 3 {
		addKeyed(t, s, fmt.Sprint("k", i), 1)
	}
	drain(t, s) // its claims prune too; what is left depends on when
	addKeyed(t, s, "k9", 1)
	drain(t, s)
	s.pruneMu.Lock()
	s.prune = pruneState{} // a sweep is due
	s.pruneMu.Unlock()
	if _, err := s.Claim(ctx, outbox.ClaimRequest{Token: "x", Limit: 1, Lease: time.Second}); err != nil {
		t.Fatal(err)
	}
	if got := keyRows(t, s); len(got) != 0 {
		t.Fatalf("key rows after a claim with a sweep due: %v", got)
	}
	s.pruneMu.Lock()
	next := s.prune.next
	s.pruneMu.Unlock()
	if time.Until(next) < pruneEvery/2 {
		t.Fatalf("after a full sweep the next is due in %v, want about %v", time.Until(next), pruneEvery)
	}
}

// Writers of one key, an ordered relay and the prune, all at once: the relay delivers the
// key's messages in the order their writers held the key, and the prune does delete the key's
// row in the gaps between writers.
func TestPruneRacingWritersKeepsCommitOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := testStore(t)
	const writers, each = 4, 40
	var (
		ticket    atomic.Int64 // taken while holding the key, so its order is the commit order
		inside    atomic.Int32
		overlaps  atomic.Int32
		deadlocks atomic.Int32
		pruned    atomic.Int64
	)
	write := func() error {
		for {
			tx, err := s.DB().BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			m := &outbox.Message{Type: "T", Key: "k", Payload: []byte("0")}
			if err := s.Add(ctx, tx, m); err != nil {
				_ = tx.Rollback()
				if retryable(err) {
					deadlocks.Add(1)
					continue
				}
				return err
			}
			if inside.Add(1) > 1 {
				overlaps.Add(1)
			}
			n := ticket.Add(1)
			_, err = tx.ExecContext(ctx, "UPDATE "+s.table+" SET payload = ? WHERE id = ?", strconv.FormatInt(n, 10), m.ID)
			inside.Add(-1)
			if err != nil {
				_ = tx.Rollback()
				return err
			}
			if err := tx.Commit(); err != nil {
				return err
			}
			return nil
		}
	}
	errs := make(chan error, writers+1)
	stop := make(chan struct{})
	var aux sync.WaitGroup
	aux.Add(1)
	go func() { // the prune, as fast as it can go
		defer aux.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, n, err := s.prunePage(ctx, nil, prunePage)
			if err != nil {
				errs <- err
				return
			}
			pruned.Add(int64(n))
		}
	}()
	defer func() { close(stop); aux.Wait() }()
	var got []int64
	deliver := func() error {
		token := fmt.Sprint("r", len(got))
		msgs, err := s.Claim(ctx, outbox.ClaimRequest{Token: token, Limit: 3, Lease: time.Minute, Ordered: true})
		if err != nil {
			return err
		}
		var ids []string
		for _, m := range msgs {
			n, err := strconv.ParseInt(string(m.Payload), 10, 64)
			if err != nil {
				return err
			}
			got = append(got, n)
			ids = append(ids, m.ID)
		}
		if len(ids) > 0 {
			if _, err := s.Ack(ctx, token, ids); err != nil {
				return err
			}
		}
		return nil
	}
	// Rounds: the writers write at once, racing each other and the prune, while the relay
	// delivers; then the relay drains the key, and the prune finds it idle until the next round.
	for round := range each {
		var wg sync.WaitGroup
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := write(); err != nil {
					errs <- err
				}
			}()
		}
		for len(got) < (round+1)*writers && ctx.Err() == nil {
			select {
			case err := <-errs:
				wg.Wait()
				t.Fatal(err)
			default:
			}
			if err := deliver(); err != nil {
				wg.Wait()
				t.Fatal(err)
			}
		}
		wg.Wait()
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	t.Logf("%d messages, %d key rows pruned meanwhile, %d writer deadlocks retried", len(got), pruned.Load(), deadlocks.Load())
	if overlaps.Load() > 0 {
		t.Fatalf("%d times two writers of the key held it at once", overlaps.Load())
	}
	if len(got) != writers*each {
		t.Fatalf("delivered %d of %d", len(got), writers*each)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("delivery %d is ticket %d after %d: not the order the writers held the key", i, got[i], got[i-1])
		}
	}
	if pruned.Load() == 0 {
		t.Fatal("the prune never deleted the key's row: the race was not run")
	}
}

// A key table from before it recorded keys: CheckSchema names the missing column, EnsureSchema
// adds it, and the prune takes the old rows for idle.
func TestPruneKeysOfAnEarlierKeyTable(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	if _, err := s.DB().ExecContext(ctx, "DROP TABLE "+s.keys); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, "CREATE TABLE "+s.keys+" (lock_key BINARY(32) NOT NULL PRIMARY KEY) ENGINE=InnoDB"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, "INSERT INTO "+s.keys+" VALUES (UNHEX(SHA2('old', 256)))"); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "has no column msg_key") {
		t.Fatalf("CheckSchema of an earlier key table = %v", err)
	}
	if err := s.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	addKeyed(t, s, "new", 1)
	if _, n, err := s.prunePage(ctx, nil, prunePage); err != nil || n != 1 {
		t.Fatalf("prune = %d deleted, %v; want the old row", n, err)
	}
	if got := keyRows(t, s); len(got) != 1 || !got["new"] {
		t.Fatalf("key rows: %v", got)
	}
}

// A missing key table is a schema error too.
func TestCheckSchemaMissingKeyTable(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	if _, err := s.DB().ExecContext(ctx, "DROP TABLE "+s.keys); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); !errors.Is(err, outbox.ErrSchema) || !strings.Contains(err.Error(), "_keys") {
		t.Fatalf("CheckSchema without the key table = %v", err)
	}
}

// The prune deletes a key's row while two writers of the key wait for it: when it commits, one
// writer makes the row again and holds it, and the other still waits for that one (its Add
// times out while the first holds the key), never both at once.
func TestPruneDeletesARowWritersWaitFor(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	addKeyed(t, s, "k", 1)
	drain(t, s)
	type result struct{ err error }
	results := make(chan result, 2)
	proceed := make(chan struct{}) // closed once both Adds have returned
	var wg sync.WaitGroup
	writer := func() {
		defer wg.Done()
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			results <- result{err}
			return
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = 2"); err != nil {
			results <- result{err}
			return
		}
		err = s.Add(ctx, tx, &outbox.Message{Type: "T", Key: "k", Payload: []byte("{}")})
		results <- result{err}
		if err == nil {
			<-proceed // hold the key until the other writer's Add has returned too
			_ = tx.Commit()
		}
	}
	waiting := func() (n int) { // connections inside an Add's key-row insert
		rows, err := s.DB().QueryContext(ctx, "SHOW FULL PROCESSLIST")
		if err != nil {
			t.Error(err)
			return 0
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Error(err)
				return 0
			}
			if info := vals[7].String; strings.HasPrefix(info, "INSERT INTO "+s.keys) {
				n++
			}
		}
		if err := rows.Err(); err != nil {
			t.Error(err)
			return 0
		}
		return n
	}
	s.pruneHeld = func() {
		s.pruneHeld = nil
		wg.Add(2)
		go writer()
		go writer()
		deadline := time.Now().Add(10 * time.Second)
		for waiting() < 2 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // polling a condition, bounded
		}
		if n := waiting(); n < 2 {
			t.Errorf("%d writers waiting for the pruned row, want 2", n)
		}
	}
	_, deleted, err := s.prunePage(ctx, nil, prunePage)
	if err != nil || deleted != 1 {
		t.Fatalf("prune = %d deleted, %v", deleted, err)
	}
	first, second := <-results, <-results
	close(proceed)
	wg.Wait()
	ok := 0
	for _, r := range []result{first, second} {
		var me *mysql.MySQLError
		switch {
		case r.err == nil:
			ok++
		case !errors.As(r.err, &me) || me.Number != errLockWait:
			t.Fatalf("a waiting writer failed otherwise than by waiting too long for the key: %v", r.err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of the two writers got the key at once (errors %v, %v); want exactly 1", ok, first.err, second.err)
	}
	if got := keyRows(t, s); !got["k"] {
		t.Fatalf("the key's row was not made again: %v", got)
	}
}
