package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

// eachMode runs fn with the pool in pgx's default exec mode and in the simple protocol.
func eachMode(t *testing.T, fn func(t *testing.T, mode pgx.QueryExecMode)) {
	t.Run("Default", func(t *testing.T) { fn(t, 0) })
	t.Run("SimpleProtocol", func(t *testing.T) { fn(t, pgx.QueryExecModeSimpleProtocol) })
}

func claim(t *testing.T, s outbox.Store, owner string, limit int, ordered bool) []*outbox.Message {
	t.Helper()
	msgs, err := s.Claim(context.Background(), outbox.ClaimRequest{Token: owner, Limit: limit, Lease: time.Minute, Ordered: ordered})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return msgs
}

func ids(msgs []*outbox.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	eachMode(t, func(t *testing.T, mode pgx.QueryExecMode) {
		s, _ := newStore(t, func(c *postgres.Config) { c.QueryExecMode = mode })
		ctx := context.Background()
		in := &outbox.Message{Type: "USER_CREATED", Key: "user-1", Payload: []byte(`{"b": 2, "a": [1, "x\u0000"]}`),
			Result: []byte(`{"id":7}`), Headers: map[string]string{"traceparent": "00-abc", "nul": "a\x00b", "é": "ü"}}
		plain := msg(t, "PLAIN", "", map[string]int{"n": 1})
		add(t, s, in, plain)

		got := claim(t, s, "r1", 10, false)
		if len(got) != 2 || got[0].ID != in.ID || got[1].ID != plain.ID {
			t.Fatalf("claim = %v, want [%s %s] in insert order", ids(got), in.ID, plain.ID)
		}
		m := got[0]
		if m.Type != in.Type || m.Key != in.Key || string(m.Payload) != string(in.Payload) || string(m.Result) != string(in.Result) ||
			!m.CreatedAt.Equal(in.CreatedAt) || m.CreatedAt.Location() != time.UTC || m.Attempts != 0 {
			t.Fatalf("round trip changed the message:\n got %+v\nwant %+v", m, in)
		}
		if len(m.Headers) != 3 || m.Headers["nul"] != "a\x00b" || m.Headers["é"] != "ü" {
			t.Fatalf("headers = %q", m.Headers)
		}
		if got[1].Headers != nil || got[1].Result != nil {
			t.Fatalf("empty headers/result came back as %q / %q", got[1].Headers, got[1].Result)
		}
		if again := claim(t, s, "r2", 10, false); len(again) != 0 {
			t.Fatalf("leased messages claimed again: %v", ids(again))
		}
		if _, err := s.Ack(ctx, "r1", []string{in.ID, plain.ID, "not-a-uuid", "0190a0a0-0000-7000-8000-000000000000"}); err != nil {
			t.Fatal(err)
		}
		c, err := s.Counts(ctx)
		if err != nil || c != (outbox.Counts{}) {
			t.Fatalf("counts after ack = %+v, %v; want all zero", c, err)
		}
	})
}

func TestAckOnlyByLeaseOwner(t *testing.T) {
	s, _ := newStore(t, func(c *postgres.Config) { c.KeepDelivered = true })
	ctx := context.Background()
	m := msg(t, "T", "", 1)
	add(t, s, m)
	claim(t, s, "owner", 1, false)
	if _, err := s.Ack(ctx, "intruder", []string{m.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Nack(ctx, "intruder", []outbox.Failure{{ID: m.ID, Error: "x", Dead: true}}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Counts(ctx); c.Pending != 1 {
		t.Fatalf("another owner's ack or nack counted: %+v", c)
	}
	if _, err := s.Ack(ctx, "owner", []string{m.ID}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Counts(ctx); c.Pending != 0 || c.Delivered != 1 {
		t.Fatalf("owner's ack not counted: %+v", c)
	}
}

func TestNackRetryAndDead(t *testing.T) {
	eachMode(t, func(t *testing.T, mode pgx.QueryExecMode) {
		s, _ := newStore(t, func(c *postgres.Config) { c.QueryExecMode = mode })
		ctx := context.Background()
		a, b := msg(t, "A", "", 1), msg(t, "B", "", 2)
		add(t, s, a, b)
		claim(t, s, "r", 10, false)
		_, err := s.Nack(ctx, "r", []outbox.Failure{
			{ID: a.ID, Error: "broker down\x00 \xff", Delay: 300 * time.Millisecond},
			{ID: b.ID, Error: "poison", Dead: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := claim(t, s, "r", 10, false); len(got) != 0 {
			t.Fatalf("claimed before retry time: %v", ids(got))
		}
		time.Sleep(350 * time.Millisecond)
		got := claim(t, s, "r", 10, false)
		if len(got) != 1 || got[0].ID != a.ID || got[0].Attempts != 1 {
			t.Fatalf("after retry time claim = %+v, want %s with 1 attempt", got, a.ID)
		}
		dead, err := s.ListDead(ctx, outbox.DeadFilter{})
		if err != nil || len(dead) != 1 || dead[0].ID != b.ID || dead[0].LastError != "poison" || dead[0].Attempts != 1 || dead[0].DiedAt.IsZero() {
			t.Fatalf("dead = %+v, %v", dead, err)
		}
		if n, err := s.Requeue(ctx, outbox.DeadFilter{Type: "B"}); err != nil || n != 1 {
			t.Fatalf("requeue = %d, %v", n, err)
		}
		got = claim(t, s, "r", 10, false)
		if len(got) != 1 || got[0].ID != b.ID || got[0].Attempts != 0 {
			t.Fatalf("requeued claim = %+v", got)
		}
	})
}

func TestCorruptRowIsDeadLettered(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	bad, good := msg(t, "BAD", "", 1), msg(t, "GOOD", "", 2)
	add(t, s, bad, good)
	if _, err := s.Pool().Exec(ctx, "UPDATE "+s.Table()+` SET headers = '{"n": 1}' WHERE id = $1`, bad.ID); err != nil {
		t.Fatal(err)
	}
	got := claim(t, s, "r", 10, false)
	if len(got) != 1 || got[0].ID != good.ID {
		t.Fatalf("claim = %v, want only the good row", ids(got))
	}
	dead, err := s.ListDead(ctx, outbox.DeadFilter{IDs: []string{bad.ID}})
	if err != nil || len(dead) != 1 || !strings.Contains(dead[0].LastError, "postgres: corrupt message: invalid message: headers") {
		t.Fatalf("dead = %+v, %v; want the corrupt row with its reason", dead, err)
	}
}

func TestClosedStore(t *testing.T) {
	s, _ := newStore(t, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	ctx := context.Background()
	_, err := s.Claim(ctx, outbox.ClaimRequest{Token: "r", Limit: 1, Lease: time.Second})
	if !errors.Is(err, outbox.ErrClosed) || !strings.HasPrefix(err.Error(), "postgres: claim:") {
		t.Fatalf("claim on closed store: %v", err)
	}
	if _, err := s.Listen(ctx); !errors.Is(err, outbox.ErrClosed) {
		t.Fatalf("listen on closed store: %v", err)
	}
}

// A key's run that sits behind many rows of a blocked key is still found: the ordered claim
// walks the keys, passing over the blocked one with one probe of its head.
func TestOrderedHeadBehindBlockedKey(t *testing.T) {
	eachMode(t, func(t *testing.T, mode pgx.QueryExecMode) {
		s, _ := newStore(t, func(c *postgres.Config) { c.QueryExecMode = mode })
		ctx := context.Background()
		deep := make([]*outbox.Message, 50)
		for i := range deep {
			deep[i] = msg(t, "T", "deep", i)
		}
		late := []*outbox.Message{msg(t, "T", "late", 0), msg(t, "T", "late", 1), msg(t, "T", "late", 2)}
		unkeyed := msg(t, "T", "", 0)
		add(t, s, deep...)
		add(t, s, append(late, unkeyed)...)
		head := claim(t, s, "r", 1, true)
		if len(head) != 1 || head[0].ID != deep[0].ID {
			t.Fatalf("first claim = %v, want the deep key's head", ids(head))
		}
		if _, err := s.Nack(ctx, "r", []outbox.Failure{{ID: deep[0].ID, Error: "poison", Dead: true}}); err != nil {
			t.Fatal(err)
		}
		got := claim(t, s, "r", 4, true)
		if want := append(ids(late), unkeyed.ID); strings.Join(ids(got), ",") != strings.Join(want, ",") {
			t.Fatalf("claim = %v, want %v from behind 49 blocked rows", ids(got), want)
		}
	})
}

// An ordered claim racing another claim for a key's head (here: the head row locked by another
// transaction, which SKIP LOCKED passes over) must not take the rows behind it: they would go out
// before the head. The fence leaves them, and they come out with their head once it is free.
func TestOrderedClaimFencedBehindALockedHead(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	k := []*outbox.Message{msg(t, "T", "k", 0), msg(t, "T", "k", 1), msg(t, "T", "k", 2)}
	free := msg(t, "T", "", 0)
	add(t, s, append(k, free)...)
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SELECT 1 FROM "+s.Table()+" WHERE id = $1 FOR UPDATE", k[0].ID); err != nil {
		t.Fatal(err)
	}
	got := claim(t, s, "racing", 10, true)
	if strings.Join(ids(got), ",") != free.ID {
		t.Fatalf("claim while the head is locked elsewhere = %v, want only the unkeyed %s", ids(got), free.ID)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, "after", 10, true); strings.Join(ids(got), ",") != strings.Join(ids(k), ",") {
		t.Fatalf("claim once the head is free = %v, want the whole run %v", ids(got), ids(k))
	}
}
