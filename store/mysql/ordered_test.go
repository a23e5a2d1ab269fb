package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

// addKeyed writes n messages of key in batches of one transaction each, returning them in order.
func addKeyed(t *testing.T, s *Store, key string, n int) []*outbox.Message {
	t.Helper()
	var all []*outbox.Message
	for len(all) < n {
		var msgs []*outbox.Message
		for range min(500, n-len(all)) {
			msgs = append(msgs, &outbox.Message{Type: "T", Key: key, Payload: []byte("{}")})
		}
		if _, err := Execute(context.Background(), s, func(context.Context, *sql.Tx) (int, error) { return 0, nil }, msgs...); err != nil {
			t.Fatal(err)
		}
		all = append(all, msgs...)
	}
	return all
}

// Keys take turns: old keys with long backlogs do not hold the newer keys back. With a limit
// smaller than the keys with due heads, successive claims reach every key within
// ceil(keys/limit) claims, each key's messages in order, and never two leases of one key.
func TestOrderedClaimKeysTakeTurns(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	const keys, limit = 10, 4
	order := map[string][]string{} // per key, IDs in write order
	for i := range keys {
		n := 1
		if i < 3 {
			n = 20 // the old keys' backlog, written first
		}
		key := fmt.Sprintf("k%02d", i)
		for _, m := range addKeyed(t, s, key, n) {
			order[key] = append(order[key], m.ID)
		}
	}
	seen := map[string]int{} // per key, how many of its messages came out
	claims := 0
	for len(seen) < keys && claims < 50 {
		claims++
		got, err := s.Claim(ctx, outbox.ClaimRequest{Token: fmt.Sprint("c", claims), Limit: limit, Lease: time.Minute, Ordered: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			t.Fatalf("claim %d returned nothing with keys still waiting (seen %v)", claims, seen)
		}
		var ids []string
		for _, m := range got {
			if want := order[m.Key][seen[m.Key]]; m.ID != want {
				t.Fatalf("claim %d: key %s gave %s, want %s next", claims, m.Key, m.ID, want)
			}
			seen[m.Key]++
			ids = append(ids, m.ID)
		}
		if n, err := s.Ack(ctx, fmt.Sprint("c", claims), ids); err != nil || n != len(ids) {
			t.Fatalf("ack = %d, %v", n, err)
		}
	}
	if want := (keys + limit - 1) / limit; claims > want {
		t.Fatalf("reaching all %d keys took %d claims of %d, want at most %d", keys, claims, limit, want)
	}
}

// A lone key fills the batch with its run, and a short key's unused share goes to the others.
func TestOrderedClaimFillsTheBatch(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	addKeyed(t, s, "short", 1)
	addKeyed(t, s, "long", 30)
	got, err := s.Claim(ctx, outbox.ClaimRequest{Token: "a", Limit: 10, Lease: time.Minute, Ordered: true})
	if err != nil || len(got) != 10 {
		t.Fatalf("claim of 10 over a 1-run and a 30-run = %d messages, %v", len(got), err)
	}
	got, err = s.Claim(ctx, outbox.ClaimRequest{Token: "b", Limit: 10, Lease: time.Minute, Ordered: true})
	if err != nil || len(got) != 0 {
		t.Fatalf("a second claim while both keys are leased = %d messages, %v", len(got), err)
	}
}

// The ordered claim's cost behind a long blocked backlog, beside an unordered claim of the same
// size over the same table (times logged, not asserted).
func TestOrderedClaimCostBehindBlockedBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 11,000 rows")
	}
	ctx := context.Background()
	s := testStore(t)
	addKeyed(t, s, "busy", 10000)
	if got, err := s.Claim(ctx, outbox.ClaimRequest{Token: "h", Limit: 1, Lease: time.Hour, Ordered: true}); err != nil || len(got) != 1 {
		t.Fatalf("claiming the busy head = %d, %v", len(got), err)
	}
	for i := range 100 {
		addKeyed(t, s, fmt.Sprint("k", i), 10)
	}
	measure := func(ordered bool) time.Duration {
		var times []time.Duration
		for i := range 5 {
			start := time.Now()
			token := fmt.Sprint(ordered, i)
			got, err := s.Claim(ctx, outbox.ClaimRequest{Token: token, Limit: 100, Lease: time.Minute, Ordered: ordered})
			times = append(times, time.Since(start))
			if err != nil || len(got) != 100 {
				t.Fatalf("claim = %d, %v", len(got), err)
			}
			var back []outbox.Failure // as they were, for the next claim
			for _, m := range got {
				back = append(back, outbox.Failure{ID: m.ID, Release: true})
			}
			if n, err := s.Nack(ctx, token, back); err != nil || n != len(back) {
				t.Fatalf("nack = %d, %v", n, err)
			}
		}
		slices.Sort(times)
		return times[len(times)/2]
	}
	for range 2 { // warm
		measure(true)
		measure(false)
	}
	o, u := measure(true), measure(false)
	t.Logf("claim of 100 behind 10,000 blocked rows of one key: ordered %v, unordered %v (%.1fx)", o, u, float64(o)/float64(u))
}

// A claim that finds the heads it walked to locked by a racing claim walks on past them with
// the rest of its batch, instead of coming back short while other keys are due.
func TestOrderedClaimWalksOnPastHeadsTakenMeanwhile(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	for i := range 30 {
		addKeyed(t, s, fmt.Sprintf("k%02d", i), 2)
	}
	// The racing claim: it holds the heads of the first ten keys, not yet leased.
	racer, err := s.DB().BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		t.Fatal(err)
	}
	defer racer.Rollback()
	rows, err := racer.QueryContext(ctx, "SELECT seq FROM "+s.table+" WHERE status = 'pending' AND msg_key < 'k10' FOR UPDATE")
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(rows.Close(), rows.Err()); err != nil { // the locks are taken or this says why
		t.Fatal(err)
	}
	got, err := s.Claim(ctx, outbox.ClaimRequest{Token: "a", Limit: 10, Lease: time.Minute, Ordered: true})
	if err != nil || len(got) != 10 {
		t.Fatalf("claim beside a racing one = %d messages, %v; want 10 from the keys it does not hold", len(got), err)
	}
	for _, m := range got {
		if m.Key < "k10" {
			t.Fatalf("claimed %s of key %s, which the racing claim holds", m.ID, m.Key)
		}
	}
}

// A claim that loses some keys to a racing claim and finds no other key due still returns the
// runs it did lock.
func TestOrderedClaimKeepsWhatItLockedWhenTheWalkEnds(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	for i := range 4 {
		addKeyed(t, s, fmt.Sprintf("k%02d", i), 1)
	}
	racer, err := s.DB().BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		t.Fatal(err)
	}
	defer racer.Rollback()
	rows, err := racer.QueryContext(ctx, "SELECT seq FROM "+s.table+" WHERE status = 'pending' AND msg_key = 'k01' FOR UPDATE")
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(rows.Close(), rows.Err()); err != nil { // the locks are taken or this says why
		t.Fatal(err)
	}
	got, err := s.Claim(ctx, outbox.ClaimRequest{Token: "a", Limit: 10, Lease: time.Minute, Ordered: true})
	if err != nil || len(got) != 3 {
		t.Fatalf("claim with one of four keys held elsewhere = %d messages, %v; want the other 3", len(got), err)
	}
}
