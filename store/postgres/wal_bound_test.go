package postgres_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/transport/memory"
)

// bigTransaction writes n messages of size bytes each in one transaction, in Adds of 100, keys
// cycling through keys (none when empty).
func bigTransaction(t *testing.T, s *postgres.Store, n, size int, keys ...string) []*outbox.Message {
	t.Helper()
	perMessage := make([]string, n)
	if len(keys) > 0 {
		for i := range perMessage {
			perMessage[i] = keys[i%len(keys)]
		}
	}
	return keyedTransaction(t, s, size, perMessage)
}

// keyedTransaction writes one message of size bytes per entry of keys, with that key, in one
// transaction, in Adds of 100.
func keyedTransaction(t *testing.T, s *postgres.Store, size int, keys []string) []*outbox.Message {
	t.Helper()
	payload := `"` + strings.Repeat("x", size-2) + `"`
	n := len(keys)
	written := make([]*outbox.Message, n)
	for i := range written {
		written[i] = msg(t, "T", keys[i], payload)
	}
	err := pgx.BeginFunc(context.Background(), s.Pool(), func(tx pgx.Tx) error {
		for i := 0; i < n; i += 100 {
			if err := s.Add(context.Background(), tx, written[i:min(i+100, n)]...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("add: %v", err)
	}
	return written
}

// One transaction larger than the buffer's bound is not held whole: what does not fit goes to
// the table as it is decoded, the reader keeps reading (Sync returns), and a relay delivers
// every event once. Checked to fail before the bound: all 2000 buffered, Sync timed out.
func TestWALLargeTransactionStaysWithinTheBound(t *testing.T) {
	s, _ := newWALStore(t, func(c *postgres.Config) { c.WAL.MaxBuffered = 100 })
	syncStore(t, s) // the reader holds the slot
	written := bigTransaction(t, s, 2000, 32<<10)
	var mem runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&mem)
	before := mem.HeapAlloc >> 20
	start := time.Now()
	// About 2 s here, 8 s under the race detector: the server decodes 64 MiB.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("sync after a transaction past the bound: %v (after %v)", err, time.Since(start))
	}
	t.Logf("sync took %v", time.Since(start))
	runtime.GC()
	runtime.ReadMemStats(&mem)
	t.Logf("live heap: %d MiB before sync (the test holds what it wrote), %d MiB after", before, mem.HeapAlloc>>20)
	tr := memory.New()
	runRelay(t, s, tr, false)
	waitCtx, cancelWait := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelWait()
	if err := tr.WaitFor(waitCtx, len(written)); err != nil {
		t.Fatalf("delivered %d of %d: %v", len(tr.Received()), len(written), err)
	}
	outboxtest.CheckDelivery(t, written, tr.Received(), outboxtest.DeliveryCheck{})
	n, bytes := postgres.WALBufferPeak(s)
	t.Logf("the reader held at most %d messages, %d bytes", n, bytes)
	if n > 100 {
		t.Fatalf("the reader held %d messages (%d bytes) at once; MaxBuffered is 100", n, bytes)
	}
}

// The byte bound holds on its own: with MaxBufferedBytes 1 MiB, the reader never holds more.
func TestWALBufferByteBound(t *testing.T) {
	const bound = 1 << 20
	s, _ := newWALStore(t, func(c *postgres.Config) { c.WAL.MaxBufferedBytes = bound })
	syncStore(t, s)
	var written []*outbox.Message
	for range 3 {
		written = append(written, bigTransaction(t, s, 200, 16<<10)...)
	}
	syncStore(t, s)
	tr := memory.New()
	runRelay(t, s, tr, false)
	waitCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := tr.WaitFor(waitCtx, len(written)); err != nil {
		t.Fatalf("delivered %d of %d: %v", len(tr.Received()), len(written), err)
	}
	outboxtest.CheckDelivery(t, written, tr.Received(), outboxtest.DeliveryCheck{})
	n, bytes := postgres.WALBufferPeak(s)
	t.Logf("the reader held at most %d messages, %d bytes", n, bytes)
	if bytes > bound {
		t.Fatalf("the reader held %d bytes (%d messages) at once; MaxBufferedBytes is %d", bytes, n, bound)
	}
}

// In ordered mode the part of a large transaction that went to the table keeps each key's
// order, behind the key's earlier events still in the buffer and ahead of its later ones.
func TestWALLargeTransactionKeepsKeyOrder(t *testing.T) {
	s, _ := newWALStore(t, func(c *postgres.Config) { c.WAL.MaxBuffered = 50 })
	syncStore(t, s)
	keys := []string{"k0", "k1", "k2", "k3"}
	var written []*outbox.Message
	for i := range 20 {
		m := msg(t, "T", keys[i%4], i)
		add(t, s, m)
		written = append(written, m)
	}
	written = append(written, bigTransaction(t, s, 600, 1<<10, keys...)...)
	for i := range 20 {
		m := msg(t, "T", keys[i%4], i)
		add(t, s, m)
		written = append(written, m)
	}
	// The reader holds the first 20, and the large transaction waits for them to be settled.
	syncStore(t, s)
	tr := memory.New()
	runRelay(t, s, tr, true)
	waitCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := tr.WaitFor(waitCtx, len(written)); err != nil {
		t.Fatalf("delivered %d of %d: %v", len(tr.Received()), len(written), err)
	}
	outboxtest.CheckDelivery(t, written, tr.Received(), outboxtest.DeliveryCheck{Ordered: true})
	if n, _ := postgres.WALBufferPeak(s); n > 50 {
		t.Fatalf("the reader held %d messages at once; MaxBuffered is 50", n)
	}
}

func TestWALMaxBufferedBytesValidation(t *testing.T) {
	for _, c := range []struct {
		bytes int64
		ok    bool
	}{{0, true}, {1 << 20, true}, {-1, false}, {1000, false}} {
		err := postgres.Config{URL: "postgres://localhost/db", WAL: &postgres.WALConfig{MaxBufferedBytes: c.bytes}}.Validate()
		if (err == nil) != c.ok {
			t.Errorf("MaxBufferedBytes %d: Validate() = %v", c.bytes, err)
		} else if err != nil && !strings.Contains(err.Error(), "WAL.MaxBufferedBytes") {
			t.Errorf("MaxBufferedBytes %d: %v does not name the field", c.bytes, err)
		}
	}
}

// A stop while a transaction too large for the buffer is being written to the table, part of it
// delivered from there already: the next holder streams the transaction again, and sends again
// nothing of it that was acknowledged, after a clean stop and after the holder lost its
// replication connection (the record of the part written is written with it, so a crash is the
// same). The reader is held in the middle of the transaction by a message of key b streamed
// before it and leased for an hour: the batch of the large transaction that reaches key b waits
// for it. Checked to fail both ways (the next holder wrote the delivered part to the table again
// and sent it a second time) without the record of the part written.
func TestWALStopInLargeTransaction(t *testing.T) {
	t.Run("Clean", func(t *testing.T) { stopInLargeTransaction(t, false) })
	t.Run("LostReplication", func(t *testing.T) { stopInLargeTransaction(t, true) })
}

func stopInLargeTransaction(t *testing.T, cut bool) {
	admin := adminPool(t)
	var p *proxy
	var replication string
	if cut {
		p, replication = proxiedURL(t)
	}
	s, cfg := newWALStore(t, func(c *postgres.Config) {
		c.WAL.MaxBufferedBytes = 1 << 20
		c.WAL.ReplicationURL = replication
	})
	wal := *cfg.WAL
	wal.ReplicationURL = ""
	cfg.WAL = &wal // the next holder's path is its own
	ctx := context.Background()
	hold := msg(t, "T", "b", 0)
	walAdd(t, s, hold)
	got, err := s.Claim(ctx, outbox.ClaimRequest{Token: "hold", Limit: 10, Lease: time.Hour, Ordered: true})
	if err != nil || len(got) != 1 {
		t.Fatalf("claimed %d, %v; want the held message", len(got), err)
	}
	// 3.2 MiB of key a, then key b: most of key a goes to the table before the reader waits
	// for the held message.
	var keys []string
	for range 200 {
		keys = append(keys, "a")
	}
	for range 100 {
		keys = append(keys, "b")
	}
	written := keyedTransaction(t, s, 16<<10, keys)
	tr := &recorder{}
	r := runRelay(t, s, tr, true)
	waitFor(t, 30*time.Second, "part of the large transaction to be delivered from the table", func() bool { return tr.count() >= 100 })
	if cut {
		p.cutAll()
		waitFor(t, 10*time.Second, "the holder to see that its replication connection ended", func() bool {
			st, err := s.SlotStatus(ctx)
			return err == nil && !st.Holding
		})
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !cut {
		// The reader may be in the middle of writing a batch: cut off while it was being
		// sent, that left the pool's Close waiting 15 s for its connection (about one run in
		// eight failed this before the batch's write ignored the closing).
		start := time.Now()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Close took %v", d)
		}
	}
	left := map[string]bool{}
	rows, err := admin.Query(ctx, "SELECT id::text FROM "+s.Table())
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		left[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	for _, p := range tr.all() {
		if !left[p.ID] {
			acked[p.ID] = true
		}
	}
	if len(acked) == 0 || len(acked) >= 200 {
		t.Fatalf("%d of the large transaction's messages acknowledged before the stop; want part of key a", len(acked))
	}

	next := openStore(t, cfg)
	tr2 := &recorder{}
	runRelay(t, next, tr2, true)
	want := append([]*outbox.Message{hold}, written...)
	waitFor(t, 60*time.Second, "every unacknowledged message to be delivered", func() bool {
		got := map[string]bool{}
		for _, p := range tr2.all() {
			got[p.ID] = true
		}
		for _, m := range want {
			if !acked[m.ID] && !got[m.ID] {
				return false
			}
		}
		return true
	})
	settledAll(t, next)
	again := 0
	for _, p := range tr2.all() {
		if acked[p.ID] {
			again++
		}
	}
	if again > 0 {
		t.Fatalf("after a stop in a large transaction (replication cut: %v) the next holder sent %d of its %d acknowledged messages again", cut, again, len(acked))
	}
}

// A position table of an early layout, without the large-transaction columns: a reader streams
// over it all the same (it records nothing of large transactions then), and EnsureSchema adds
// them.
func TestWALPositionTableWithoutLargeTransactionColumns(t *testing.T) {
	admin := adminPool(t)
	s, cfg := newWALStore(t, nil)
	ctx := context.Background()
	positions := `"` + cfg.Schema + `"."outbox_wal"`
	if _, err := admin.Exec(ctx, "ALTER TABLE "+positions+" DROP COLUMN tabled_tx, DROP COLUMN tabled"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	old, err := postgres.New(ctx, cfg) // no EnsureSchema
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Close() })
	m := msg(t, "T", "", 1)
	walAdd(t, old, m)
	if got := claimAll(t, old, "a"); len(got) != 1 || got[0].ID != m.ID {
		t.Fatalf("claimed %v, want the message", idsOf(got))
	}
	if err := old.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_attribute WHERE attrelid = $1::regclass AND attname IN ('tabled_tx', 'tabled') AND NOT attisdropped", positions).Scan(&n); err != nil || n != 2 {
		t.Fatalf("EnsureSchema left %d of the 2 columns, %v", n, err)
	}
}
