package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/transport/memory"
)

// walAdd writes each message in a transaction of its own, in order, and waits until the reader
// has streamed them.
func walAdd(t testing.TB, s *postgres.Store, msgs ...*outbox.Message) {
	t.Helper()
	for _, m := range msgs {
		add(t, s, m)
	}
	syncStore(t, s)
}

func syncStore(t testing.TB, s *postgres.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

// confirmedLSN reads the slot's confirmed position from the server.
func confirmedLSN(t testing.TB, admin *pgxpool.Pool, s *postgres.Store) pglogrepl.LSN {
	t.Helper()
	st, err := s.SlotStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var lsn pglogrepl.LSN
	if err := admin.QueryRow(context.Background(), "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", st.Slot).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

func currentLSN(t testing.TB, admin *pgxpool.Pool) pglogrepl.LSN {
	t.Helper()
	var lsn pglogrepl.LSN
	if err := admin.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func claimAll(t testing.TB, s outbox.Store, token string) []*outbox.Message {
	t.Helper()
	got, err := s.Claim(context.Background(), outbox.ClaimRequest{Token: token, Limit: 1000, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func idsOf(msgs []*outbox.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// The slot's confirmed position never passes a message that was streamed but not settled, even
// when everything after it was acknowledged: a reader that restarts streams it again. And once
// everything is settled the position does move past it (so WAL is not kept forever), and a
// restart streams nothing again.
func TestWALConfirmsOnlySettledMessages(t *testing.T) {
	admin := adminPool(t)
	s, cfg := newWALStore(t, nil)
	first, second, third := msg(t, "T", "", 1), msg(t, "T", "", 2), msg(t, "T", "", 3)
	walAdd(t, s, first, second, third)
	afterWrites := currentLSN(t, admin)
	got := claimAll(t, s, "a")
	if len(got) != 3 {
		t.Fatalf("claimed %d, want 3", len(got))
	}
	if n, err := s.Ack(context.Background(), "a", []string{second.ID, third.ID}); err != nil || n != 2 {
		t.Fatalf("ack = %d, %v", n, err)
	}
	// Several status intervals pass; the position must stay before the first message.
	syncStore(t, s)
	time.Sleep(5 * cfg.WAL.StatusInterval) // lets status updates go out; what is checked is the restart below
	if c := confirmedLSN(t, admin, s); c >= afterWrites {
		t.Fatalf("confirmed %s is past the writes (%s) while the first message is unsettled", c, afterWrites)
	}
	_ = s.Close()

	again := openStore(t, cfg)
	syncStore(t, again)
	streamed := claimAll(t, again, "b")
	if len(streamed) == 0 || streamed[0].ID != first.ID {
		t.Fatalf("after a restart the unsettled first message was not streamed again: got %v", idsOf(streamed))
	}
	if _, err := again.Ack(context.Background(), "b", idsOf(streamed)); err != nil {
		t.Fatal(err)
	}
	syncStore(t, again)
	waitFor(t, 10*time.Second, "the slot to confirm past the settled messages", func() bool {
		return confirmedLSN(t, admin, again) >= afterWrites
	})
	_ = again.Close()

	third2 := openStore(t, cfg)
	syncStore(t, third2)
	if got := claimAll(t, third2, "c"); len(got) != 0 {
		t.Fatalf("after everything was settled and confirmed, a restart streamed %d again", len(got))
	}
}

// recorder is a transport that records what it published, failing chosen IDs a set number of
// times first (per message, as a broker refusing one message would).
type recorder struct {
	mu        sync.Mutex
	published []*outbox.Message
	failures  map[string]int
}

func (r *recorder) KeepsKeyOrder() bool { return true }

func (r *recorder) Publish(_ context.Context, msgs []*outbox.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	failed := outbox.NewBatchError()
	stopped := map[string]bool{}
	for _, m := range msgs {
		if m.Key != "" && stopped[m.Key] {
			failed.Failed[m.ID] = errors.New("earlier message of the key failed")
			continue
		}
		if r.failures[m.ID] > 0 {
			r.failures[m.ID]--
			failed.Failed[m.ID] = errors.New("refused")
			stopped[m.Key] = m.Key != ""
			continue
		}
		r.published = append(r.published, m)
	}
	if len(failed.Failed) > 0 {
		return failed
	}
	return nil
}

func (r *recorder) failuresLeft() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, left := range r.failures {
		n += left
	}
	return n
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.published)
}

func (r *recorder) all() []*outbox.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*outbox.Message(nil), r.published...)
}

func runRelay(t testing.TB, s outbox.Store, tr outbox.Transport, ordered bool) *outbox.Relay {
	t.Helper()
	r, err := outbox.NewRelay(s, tr, outbox.Config{
		BatchSize: 50, Concurrency: 2, PollInterval: 50 * time.Millisecond, Unordered: !ordered,
		Backoff: outbox.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	return r
}

// A failed publish goes to the table with its attempt counted, and in ordered mode the key's
// later messages queue in the table behind it, so the key still arrives in commit order; other
// keys keep flowing from the stream meanwhile. Checked to fail with the queueing removed.
func TestWALSpillKeepsKeyOrder(t *testing.T) {
	admin := adminPool(t)
	s, _ := newWALStore(t, nil)
	var written []*outbox.Message
	for i := range 40 {
		written = append(written, msg(t, "T", fmt.Sprintf("k%d", i%4), i))
	}
	walAdd(t, s, written...) // assigns the IDs
	tr := &recorder{failures: map[string]int{written[4].ID: 2, written[9].ID: 1}}
	runRelay(t, s, tr, true)
	waitFor(t, 30*time.Second, "every message to be published", func() bool { return tr.count() >= len(written) })
	outboxtest.CheckDelivery(t, written, tr.all(), outboxtest.DeliveryCheck{Ordered: true})
	if left := tr.failuresLeft(); left != 0 {
		t.Fatalf("%d injected failures never happened", left)
	}

	// Every message is settled after it is published: nothing stays in the table or the buffer.
	waitFor(t, 10*time.Second, "the table and the buffer to be empty", func() bool {
		var inTable int
		if err := admin.QueryRow(context.Background(), "SELECT count(*) FROM "+s.Table()).Scan(&inTable); err != nil {
			t.Fatal(err)
		}
		st, err := s.SlotStatus(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return inTable == 0 && st.Buffered == 0
	})
}

// The spilled message keeps its attempts and last error in the table, as in table mode.
func TestWALSpillRecordsTheFailure(t *testing.T) {
	admin := adminPool(t)
	s, _ := newWALStore(t, nil)
	m := msg(t, "T", "k", 1)
	walAdd(t, s, m)
	got := claimAll(t, s, "a")
	if len(got) != 1 {
		t.Fatalf("claimed %d", len(got))
	}
	if n, err := s.Nack(context.Background(), "a", []outbox.Failure{{ID: m.ID, Error: "broker said no", Delay: time.Hour}}); err != nil || n != 1 {
		t.Fatalf("nack = %d, %v", n, err)
	}
	var status, lastError string
	var attempts int
	var wait time.Duration
	err := admin.QueryRow(context.Background(), "SELECT status, attempts, last_error, available_at - now() FROM "+s.Table()+" WHERE id = $1", m.ID).
		Scan(&status, &attempts, &lastError, &wait)
	if err != nil {
		t.Fatalf("the nacked message is not in the table: %v", err)
	}
	if status != "pending" || attempts != 1 || lastError != "broker said no" || wait < 59*time.Minute {
		t.Fatalf("spilled row: status %s attempts %d last_error %q due in %v", status, attempts, lastError, wait)
	}
	if got := claimAll(t, s, "b"); len(got) != 0 {
		t.Fatalf("claimed %d before the retry time", len(got))
	}
	// A dead one goes to the table as dead, visible to the inspector.
	d := msg(t, "T", "", 2)
	walAdd(t, s, d)
	claimAll(t, s, "c")
	if _, err := s.Nack(context.Background(), "c", []outbox.Failure{{ID: d.ID, Error: "poison", Dead: true}}); err != nil {
		t.Fatal(err)
	}
	dead, err := s.ListDead(context.Background(), outbox.DeadFilter{})
	if err != nil || len(dead) != 1 || dead[0].ID != d.ID || dead[0].LastError != "poison" {
		t.Fatalf("dead = %+v, %v", dead, err)
	}
}

// Of two relays on one slot, one streams and the other stands by; when the holder goes away the
// standby takes the slot within seconds and delivers what was written since.
func TestWALStandbyTakesOver(t *testing.T) {
	holder, cfg := newWALStore(t, nil)
	standby := openStore(t, cfg)
	tr := memory.New()
	relayA := runRelay(t, holder, tr, true)
	syncStore(t, holder) // holder has the slot before the standby starts
	runRelay(t, standby, tr, true)

	before := make([]*outbox.Message, 20)
	for i := range before {
		before[i] = msg(t, "T", "k", i)
	}
	walAdd(t, holder, before...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tr.WaitFor(ctx, len(before)); err != nil {
		t.Fatal(err)
	}
	st, _ := standby.SlotStatus(ctx)
	if st.Holding {
		t.Fatal("the standby holds the slot while the holder runs")
	}
	if err := relayA.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	_ = holder.Close()
	diedAt := time.Now()

	after := make([]*outbox.Message, 20)
	for i := range after {
		after[i] = msg(t, "T", "k", 100+i)
	}
	for _, m := range after {
		add(t, standby, m)
	}
	waitFor(t, 30*time.Second, "the standby to deliver what was written after the holder left", func() bool {
		got := map[string]bool{}
		for _, m := range tr.Received() {
			got[m.ID] = true
		}
		for _, m := range after {
			if !got[m.ID] {
				return false
			}
		}
		return true
	})
	if took := time.Since(diedAt); took > 10*time.Second {
		t.Errorf("the standby took %v to take over", took)
	}
	st, _ = standby.SlotStatus(ctx)
	if !st.Holding {
		t.Error("the standby does not report holding the slot")
	}
	outboxtest.CheckDelivery(t, append(before, after...), tr.Received(), outboxtest.DeliveryCheck{
		Ordered: true, MayRepeat: idsOf(before), // published by the holder, perhaps not yet confirmed
	})
}

// A write with no slot to read it fails (its transaction rolls back) instead of vanishing, and
// the relay's claims say why.
func TestWALMissingSlot(t *testing.T) {
	s, _ := newWALStore(t, nil)
	if err := s.DropSlot(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := pgxBegin(s, func(ctx context.Context, tx pgxTx) error { return s.Add(ctx, tx, msg(t, "T", "", 1)) })
	if !errors.Is(err, postgres.ErrNoSlot) {
		t.Fatalf("add without a slot = %v, want ErrNoSlot", err)
	}
	var claimErr error
	waitFor(t, 10*time.Second, "claims to report the missing slot", func() bool {
		_, claimErr = s.Claim(context.Background(), outbox.ClaimRequest{Token: "a", Limit: 1, Lease: time.Second})
		return claimErr != nil
	})
	if !strings.Contains(claimErr.Error(), "does not exist") {
		t.Fatalf("claim error = %v, want it to say the slot does not exist", claimErr)
	}
	st, err := s.SlotStatus(context.Background())
	if err != nil || st.Exists || !st.Alarm {
		t.Fatalf("slot status = %+v, %v; want missing with an alarm", st, err)
	}
}

// A writer checks the slot at most once a second (the check costs more than the write): a slot
// dropped under running writers makes their writes fail within a second.
func TestWALSlotDroppedUnderAWriter(t *testing.T) {
	admin := adminPool(t)
	_, cfg := newWALStore(t, nil)
	writer, err := postgres.New(context.Background(), cfg) // writes only: no reader holds the slot
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	write := func() error {
		return pgxBegin(writer, func(ctx context.Context, tx pgxTx) error { return writer.Add(ctx, tx, msg(t, "T", "", 1)) })
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	dropSlot(t, admin, cfg)
	deadline := time.Now().Add(5 * time.Second)
	for err = write(); err == nil && time.Now().Before(deadline); err = write() {
		time.Sleep(50 * time.Millisecond) // writes go on as a service's would
	}
	if !errors.Is(err, postgres.ErrNoSlot) {
		t.Fatalf("writes after the slot was dropped: %v, want ErrNoSlot within a second or so", err)
	}
}

type pgxTx = pgx.Tx

func pgxBegin(s *postgres.Store, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return pgx.BeginFunc(context.Background(), s.Pool(), func(tx pgx.Tx) error { return fn(context.Background(), tx) })
}

// Execute in WAL mode sends the write with the COMMIT: the business change and its events commit
// together, and when the write fails (no slot) the business change does not commit either.
func TestWALExecute(t *testing.T) {
	t.Run("Default", func(t *testing.T) { testWALExecute(t, 0) })
	t.Run("SimpleProtocol", func(t *testing.T) { testWALExecute(t, pgx.QueryExecModeSimpleProtocol) })
}

func testWALExecute(t *testing.T, mode pgx.QueryExecMode) {
	admin := adminPool(t)
	s, cfg := newWALStore(t, func(c *postgres.Config) { c.QueryExecMode = mode })
	ctx := context.Background()
	orders := pgx.Identifier{cfg.Schema, "orders"}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE TABLE "+orders+" (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	insert := func(id int) func(ctx context.Context, tx pgx.Tx) (int, error) {
		return func(ctx context.Context, tx pgx.Tx) (int, error) {
			_, err := tx.Exec(ctx, "INSERT INTO "+orders+" VALUES ($1)", id)
			return id, err
		}
	}
	rows := func() int {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM "+orders).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	m := msg(t, "ORDER_CREATED", "o-1", 1)
	if got, err := postgres.Execute(ctx, s, insert(1), m); err != nil || got != 1 {
		t.Fatalf("Execute = %d, %v", got, err)
	}
	syncStore(t, s)
	claimed := claimAll(t, s, "a")
	if len(claimed) != 1 || claimed[0].ID != m.ID || string(claimed[0].Result) != "1" || rows() != 1 {
		t.Fatalf("claimed %v (result %q), %d orders; want the event with its result and the order", idsOf(claimed), claimed[0].Result, rows())
	}
	if _, err := s.Ack(ctx, "a", idsOf(claimed)); err != nil {
		t.Fatal(err)
	}
	// A business statement that fails: nothing commits.
	if _, err := postgres.Execute(ctx, s, insert(1), msg(t, "ORDER_CREATED", "o-1", 2)); err == nil {
		t.Fatal("Execute with a failing business statement succeeded")
	}
	// No slot: the write fails and the order is not committed. (The slot can be dropped once
	// this store's reader let go of it; a writer needs no reader.)
	_ = s.Close()
	dropSlot(t, admin, cfg)
	s, err := postgres.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = postgres.Execute(ctx, s, insert(2), msg(t, "ORDER_CREATED", "o-2", 3))
	if !errors.Is(err, postgres.ErrNoSlot) {
		t.Fatalf("Execute without a slot = %v, want ErrNoSlot", err)
	}
	if n := rows(); n != 1 {
		t.Fatalf("%d orders after a failed Execute, want 1: the business change committed without its event", n)
	}
	// The pool's connection came back usable.
	if _, err := postgres.Execute(ctx, s, func(ctx context.Context, tx pgx.Tx) (int, error) { return 0, nil }); err != nil {
		t.Fatalf("Execute without events after a failure: %v", err)
	}
}

// A reader that dies after writing a failed message to the table, before it confirmed past it,
// leaves the next reader to stream the message again: the table has it, so the stream's copy is
// dropped, and it is neither published twice nor held by two relays at once (one from the
// stream, one from the table). Checked to fail without the check.
func TestWALRestreamedSpillStaysInTheTable(t *testing.T) {
	// No status update goes out during the test, so the slot never confirms the spill, and the
	// replication connection is cut before the store closes: a clean stop would confirm it.
	p := startProxy(t, "127.0.0.1:5432")
	s, cfg := newWALStore(t, func(c *postgres.Config) {
		c.WAL.StatusInterval = time.Hour
		c.WAL.ReplicationURL = "postgres://root@" + p.addr() + "/test?sslmode=disable"
	})
	wal := *cfg.WAL
	wal.ReplicationURL = ""
	cfg.WAL = &wal
	ctx := context.Background()
	m := msg(t, "T", "", 1)
	walAdd(t, s, m)
	if got := claimAll(t, s, "a"); len(got) != 1 {
		t.Fatalf("claimed %d, want 1", len(got))
	}
	if _, err := s.Nack(ctx, "a", []outbox.Failure{{ID: m.ID, Error: "refused", Delay: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	p.cutAll()
	waitFor(t, 10*time.Second, "the reader to lose the slot", func() bool {
		st, err := s.SlotStatus(ctx)
		return err == nil && !st.Holding
	})
	_ = s.Close() // dies before confirming

	next := openStore(t, cfg)
	syncStore(t, next)
	if got := claimAll(t, next, "b"); len(got) != 0 {
		t.Fatalf("the next reader claimed %v, which is in the table waiting for its retry", idsOf(got))
	}
	var attempts int
	if err := next.Pool().QueryRow(ctx, "SELECT attempts FROM "+next.Table()+" WHERE id = $1", m.ID).Scan(&attempts); err != nil || attempts != 1 {
		t.Fatalf("the table's row: attempts %d, %v", attempts, err)
	}
}
