package sqlite_test

import (
	"context"

	"fmt"
	"github.com/google/uuid"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/sqlite"
)

// The table's triggers keep one head per key whoever writes: the store, an unordered relay
// acking out of order, or rows inserted around the store.
func TestOrderedHeadsWhoeverWrites(t *testing.T) {
	ctx := context.Background()
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprint("KeepDelivered=", keep), func(t *testing.T) {
			s := open(t, sqlite.Config{KeepDelivered: keep})
			ordered := outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute, Ordered: true}
			head := ordered
			head.Limit = 1
			claimIDs := func(req outbox.ClaimRequest) []string {
				t.Helper()
				var ids []string
				for _, m := range claim(t, s, req) {
					ids = append(ids, m.ID)
				}
				return ids
			}
			ack := func(ids ...string) {
				t.Helper()
				if _, err := s.Ack(ctx, "o", ids); err != nil {
					t.Fatal(err)
				}
			}
			expect := func(what string, got []string, want ...string) {
				t.Helper()
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("%s: claimed %v, want %v", what, got, want)
				}
			}

			k1, k2 := msg("T", "a"), msg("T", "a")
			add(t, s, k1, k2)
			raw := uuid.NewString()
			insertRaw(t, s, raw, "a", `{}`, nil, nil) // around the store: queues behind k2
			free := msg("T", "")
			add(t, s, free)

			expect("first ordered claim", claimIDs(head), k1.ID)
			expect("claim behind a leased head", claimIDs(ordered), free.ID)
			ack(k1.ID, free.ID)
			expect("after acking the head", claimIDs(head), k2.ID)
			// An unordered claimer may take (and ack) a message behind the head; the head still
			// holds the key, and the order of what remains is kept.
			unordered := outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute}
			expect("unordered claim", claimIDs(unordered), raw)
			ack(raw)
			expect("ordered claim behind a leased head", claimIDs(ordered))
			ack(k2.ID)

			// A dead head blocks its key until purged; a requeued one comes back first.
			d1, d2 := msg("T", "b"), msg("T", "b")
			add(t, s, d1, d2)
			expect("claim the new head", claimIDs(head), d1.ID)
			if _, err := s.Nack(ctx, "o", []outbox.Failure{{ID: d1.ID, Error: "x", Dead: true}}); err != nil {
				t.Fatal(err)
			}
			expect("behind a dead head", claimIDs(ordered))
			if n, err := s.Requeue(ctx, outbox.DeadFilter{IDs: []string{d1.ID}}); err != nil || n != 1 {
				t.Fatalf("requeue = %d, %v", n, err)
			}
			expect("requeued head", claimIDs(head), d1.ID)
			if _, err := s.Nack(ctx, "o", []outbox.Failure{{ID: d1.ID, Error: "x", Dead: true}}); err != nil {
				t.Fatal(err)
			}
			if n, err := s.Purge(ctx, outbox.DeadFilter{IDs: []string{d1.ID}}); err != nil || n != 1 {
				t.Fatalf("purge = %d, %v", n, err)
			}
			expect("after purging the dead head", claimIDs(ordered), d2.ID)
			ack(d2.ID)
			expect("drained", claimIDs(ordered))
			if c, _ := s.Counts(ctx); c.Pending != 0 || c.Dead != 0 {
				t.Fatalf("counts = %+v", c)
			}
		})
	}
}

// A run ends before a message of its key that is dead, or leased or waiting for a retry, even
// when it is not the head: an unordered claimer may have taken it.
func TestOrderedRunEndsAtAHeldMessageBehindTheHead(t *testing.T) {
	ctx := context.Background()
	for _, held := range []string{"dead", "leased", "retrying"} {
		t.Run(held, func(t *testing.T) {
			s := open(t, sqlite.Config{})
			k1, k2, k3 := msg("T", "k"), msg("T", "k"), msg("T", "k")
			add(t, s, k1, k2, k3)
			unordered := claim(t, s, outbox.ClaimRequest{Token: "u", Limit: 10, Lease: time.Minute})
			if len(unordered) != 3 {
				t.Fatalf("unordered claim = %d messages, want 3", len(unordered))
			}
			back := []outbox.Failure{{ID: k1.ID, Release: true}, {ID: k3.ID, Release: true}}
			switch held {
			case "dead":
				back = append(back, outbox.Failure{ID: k2.ID, Error: "x", Dead: true})
			case "retrying":
				back = append(back, outbox.Failure{ID: k2.ID, Error: "x", Delay: time.Hour})
			}
			if n, err := s.Nack(ctx, "u", back); err != nil || n != len(back) {
				t.Fatalf("nack = %d, %v", n, err)
			}
			got := claim(t, s, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute, Ordered: true})
			if len(got) != 1 || got[0].ID != k1.ID {
				var ids []string
				for _, m := range got {
					ids = append(ids, m.ID)
				}
				t.Fatalf("ordered claim = %v, want only the head %s", ids, k1.ID)
			}
		})
	}
}
