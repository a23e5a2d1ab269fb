package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/transport/memory"
)

// A message under the store's prefix that is not one it wrote (garbage, or a valid encoding of
// an invalid message) is dead-lettered in the table with the reason and its raw content; the
// messages around it flow, and in ordered mode a dead one blocks its own key only.
func TestWALCorruptMessages(t *testing.T) {
	admin := adminPool(t)
	s, cfg := newWALStore(t, nil)
	prefix := "outbox:" + cfg.Schema + ".outbox"
	ctx := context.Background()
	before := msg(t, "T", "", 1)
	add(t, s, before)
	if _, err := admin.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, '\\x00ff'::bytea)", prefix); err != nil {
		t.Fatal(err)
	}
	after := msg(t, "T", "", 2)
	walAdd(t, s, after)
	got := claimAll(t, s, "a")
	if ids := idsOf(got); len(ids) != 2 || ids[0] != before.ID || ids[1] != after.ID {
		t.Fatalf("claimed %v, want the two valid messages", ids)
	}
	dead, err := s.ListDead(ctx, outbox.DeadFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || !strings.Contains(dead[0].LastError, "corrupt message in the WAL") || !strings.Contains(string(dead[0].Payload), "content_base64") {
		t.Fatalf("dead = %+v, want the garbage dead-lettered with a reason and its content", dead)
	}

	// Streaming the same garbage again (a restart before the slot moved past it) does not
	// dead-letter it twice.
	_ = s.Close()
	again := openStore(t, cfg)
	syncStore(t, again)
	if dead, _ := again.ListDead(ctx, outbox.DeadFilter{}); len(dead) != 1 {
		t.Fatalf("after a restart %d dead messages, want still 1", len(dead))
	}
}

// A dead head written by the reader (an invalid message of key k) blocks k in ordered mode, as
// a dead row does in table mode, while other keys flow.
func TestWALCorruptHeadBlocksItsKey(t *testing.T) {
	admin := adminPool(t)
	s, cfg := newWALStore(t, nil)
	ctx := context.Background()
	invalid := &outbox.Message{ID: uuid.NewString(), Type: "T", Key: "k", Payload: []byte("{not json"), CreatedAt: time.Now()}
	content, err := postgres.EncodeWAL(invalid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2::bytea)", "outbox:"+cfg.Schema+".outbox", content); err != nil {
		t.Fatal(err)
	}
	next, other := msg(t, "T", "k", 3), msg(t, "T", "j", 4)
	walAdd(t, s, next, other)
	tr := memory.New()
	runRelay(t, s, tr, true)
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := tr.WaitFor(waitCtx, 1); err != nil {
		t.Fatal(err)
	}
	dead, err := s.ListDead(ctx, outbox.DeadFilter{Key: "k"})
	if err != nil || len(dead) != 1 || dead[0].ID != invalid.ID {
		t.Fatalf("dead of key k = %+v, %v; want the invalid message", dead, err)
	}
	// The relay keeps claiming; k's next message must stay behind its dead head.
	time.Sleep(500 * time.Millisecond) // several claim rounds; what is checked is that next never went out
	for _, m := range tr.Received() {
		if m.ID == next.ID {
			t.Fatal("a message was published behind its key's dead head")
		}
	}
	// Purging the dead head frees the key.
	if _, err := s.Purge(ctx, outbox.DeadFilter{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.WaitFor(waitCtx, 2); err != nil {
		t.Fatalf("the key's next message did not go out after its dead head was purged: %v", err)
	}
}

// On a database whose other writes never reach the slot, its confirmed position keeps moving, so
// the slot does not hold the WAL those writes produce. Two things move it, each enough alone:
// the reader confirms the position of the server's keepalives when it has nothing unsettled,
// and it writes heartbeats when it has seen nothing for a while. Checked to fail with both off.
func TestWALHeartbeatAdvancesIdleSlot(t *testing.T) {
	admin := adminPool(t)
	s, cfg := newWALStore(t, func(c *postgres.Config) { c.WAL.HeartbeatInterval = 300 * time.Millisecond })
	syncStore(t, s) // the reader holds the slot
	ctx := context.Background()
	table := cfg.Schema + ".unrelated"
	if _, err := admin.Exec(ctx, "CREATE TABLE "+table+" (n int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "INSERT INTO "+table+" SELECT generate_series(1, 1000)"); err != nil {
		t.Fatal(err)
	}
	written := currentLSN(t, admin)
	waitFor(t, 15*time.Second, "the idle slot to confirm past unrelated writes", func() bool {
		return confirmedLSN(t, admin, s) >= written
	})
}

// A reader whose buffer is full stops reading until the relay settles messages, and everything
// still arrives, in order.
func TestWALBackPressure(t *testing.T) {
	s, _ := newWALStore(t, func(c *postgres.Config) { c.WAL.MaxBuffered = 10 })
	var written []*outbox.Message
	for i := range 300 {
		written = append(written, msg(t, "T", []string{"a", "b", "c"}[i%3], i))
	}
	for i := 0; i < len(written); i += 30 {
		add(t, s, written[i:i+30]...)
	}
	tr := memory.New()
	runRelay(t, s, tr, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tr.WaitFor(ctx, len(written)); err != nil {
		t.Fatal(err)
	}
	outboxtest.CheckDelivery(t, written, tr.Received(), outboxtest.DeliveryCheck{Ordered: true})
}

// A corrupt message of key k streamed after a valid event of k does not hold that earlier
// event: in ordered mode the block starts at the dead message, never before it. Checked to fail
// (the earlier event queued in the table behind the dead one) with the key blocked whole.
func TestWALLaterCorruptMessageHoldsNoEarlierEvent(t *testing.T) {
	admin := adminPool(t)
	s, cfg := newWALStore(t, nil)
	ctx := context.Background()
	first := msg(t, "T", "k", 1)
	add(t, s, first)
	invalid := &outbox.Message{ID: uuid.NewString(), Type: "T", Key: "k", Payload: []byte("{not json"), CreatedAt: time.Now()}
	content, err := postgres.EncodeWAL(invalid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2::bytea)", "outbox:"+cfg.Schema+".outbox", content); err != nil {
		t.Fatal(err)
	}
	later, other := msg(t, "T", "k", 3), msg(t, "T", "j", 4)
	walAdd(t, s, later, other)
	tr := memory.New()
	runRelay(t, s, tr, true)
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tr.WaitFor(waitCtx, 2); err != nil {
		t.Fatalf("published %v; want k's first event and j's: %v", idsOf(tr.Received()), err)
	}
	got := map[string]bool{}
	for _, m := range tr.Received() {
		got[m.ID] = true
	}
	if !got[first.ID] || !got[other.ID] || got[later.ID] {
		t.Fatalf("published first(k)=%t other(j)=%t later(k)=%t; want the first two only (later stays behind the dead one)",
			got[first.ID], got[other.ID], got[later.ID])
	}
}
