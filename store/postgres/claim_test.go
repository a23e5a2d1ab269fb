package postgres_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

// Ordered claims take the keys in turns: a hot key's backlog, older than everything else, fills
// one claim, and the next claim starts with the keys after it (unkeyed messages too) before it
// comes back to the hot key. Without turns the quiet keys would wait for the whole backlog.
func TestOrderedClaimKeysTakeTurns(t *testing.T) {
	eachMode(t, func(t *testing.T, mode pgx.QueryExecMode) {
		s, _ := newStore(t, func(c *postgres.Config) { c.QueryExecMode = mode })
		ctx := context.Background()
		hot := make([]*outbox.Message, 40)
		for i := range hot {
			hot[i] = msg(t, "T", "a-hot", i)
		}
		quiet := []*outbox.Message{msg(t, "T", "b", 0), msg(t, "T", "c", 0), msg(t, "T", "", 0)}
		add(t, s, hot...)
		add(t, s, quiet...)

		first := claim(t, s, "r1", 10, true)
		if want := ids(hot[:10]); !slices.Equal(ids(first), want) {
			t.Fatalf("first claim = %v, want the hot key's first 10 %v", ids(first), want)
		}
		if n, err := s.Ack(ctx, "r1", ids(first)); err != nil || n != len(first) {
			t.Fatalf("ack = %d, %v", n, err)
		}
		second := claim(t, s, "r2", 10, true)
		// The quiet keys come first in the walk; the hot key fills the rest, in order.
		want := append(ids(hot[10:17]), ids(quiet)...)
		if !slices.Equal(ids(second), want) {
			t.Fatalf("second claim = %v, want the quiet keys and the hot key's next 7 %v", ids(second), want)
		}
		if n, err := s.Ack(ctx, "r2", ids(second)); err != nil || n != len(second) {
			t.Fatalf("ack = %d, %v", n, err)
		}
		// The turn ended inside the hot key, so it goes on from there.
		if got := claim(t, s, "r3", 10, true); !slices.Equal(ids(got), ids(hot[17:27])) {
			t.Fatalf("third claim = %v, want the hot key's next 10 %v", ids(got), ids(hot[17:27]))
		}
	})
}

// Two stores over one table keep their own turns; each claim still skips what the other holds.
func TestOrderedClaimTurnsPerStore(t *testing.T) {
	s, cfg := newStore(t, nil)
	other := openStore(t, cfg)
	var a, b []*outbox.Message
	for i := range 3 {
		a = append(a, msg(t, "T", "a", i))
		b = append(b, msg(t, "T", "b", i))
	}
	add(t, s, append(a, b...)...)
	if got := claim(t, s, "s", 2, true); !slices.Equal(ids(got), ids(a[:2])) {
		t.Fatalf("first store's claim = %v, want %v", ids(got), ids(a[:2]))
	}
	// The other store starts at the first key too, finds it held, and takes the next one.
	if got := claim(t, other, "o", 10, true); !slices.Equal(ids(got), ids(b)) {
		t.Fatalf("second store's claim = %v, want %v", ids(got), ids(b))
	}
}
