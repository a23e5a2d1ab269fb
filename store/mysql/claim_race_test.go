package mysql

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

// Ordered claims racing over the same few keys share the keys out, never a key's run: each key
// goes whole to one claim, from its head, and the claims that lost it take nothing of it, nor
// hold any of its rows from the one that won (the relay's workers start their claims together,
// and a run cut short by a racing claim's passing locks comes back as a short batch).
func TestOrderedClaimsRacingKeepRunsWhole(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	const (
		rounds   = 10
		keys     = 3
		perKey   = 5
		claimers = 6
	)
	for round := range rounds {
		order := map[string][]string{} // per key, IDs in write order
		for k := range keys {
			key := fmt.Sprintf("r%02d-k%d", round, k)
			for _, m := range addKeyed(t, s, key, perKey) {
				order[key] = append(order[key], m.ID)
			}
		}
		got := make([][]*outbox.Message, claimers)
		errs := make([]error, claimers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for c := range claimers {
			wg.Go(func() {
				<-start
				got[c], errs[c] = s.Claim(ctx, outbox.ClaimRequest{Token: fmt.Sprintf("r%d-c%d", round, c), Limit: 100, Lease: time.Minute, Ordered: true})
			})
		}
		close(start)
		wg.Wait()
		holder := map[string]int{} // per key, the claim that has its rows
		for c, msgs := range got {
			if errs[c] != nil {
				t.Fatalf("round %d, claim %d: %v", round, c, errs[c])
			}
			byKey := map[string][]string{}
			for _, m := range msgs {
				byKey[m.Key] = append(byKey[m.Key], m.ID)
			}
			for key, ids := range byKey {
				if h, ok := holder[key]; ok {
					t.Fatalf("round %d: claims %d and %d both leased rows of key %s", round, h, c, key)
				}
				holder[key] = c
				for i, id := range ids {
					if id != order[key][i] {
						t.Fatalf("round %d, claim %d: key %s's rows %v do not start at its head (%v)", round, c, key, ids, order[key])
					}
				}
				if len(ids) != perKey {
					t.Errorf("round %d, claim %d: took %d of key %s's %d due rows: a racing claim cut its run", round, c, len(ids), key, perKey)
				}
			}
		}
		if len(holder) != keys {
			t.Errorf("round %d: %d of %d keys claimed by %d racing claims of 100", round, len(holder), keys, claimers)
		}
		for c, msgs := range got {
			ids := make([]string, len(msgs))
			for i, m := range msgs {
				ids[i] = m.ID
			}
			if _, err := s.Ack(ctx, fmt.Sprintf("r%d-c%d", round, c), ids); err != nil {
				t.Fatal(err)
			}
		}
		if t.Failed() {
			return
		}
	}
}
