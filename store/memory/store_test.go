package memory_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/memory"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func memoryHarness(keep bool) outboxtest.StoreFactory {
	return func(t *testing.T) outboxtest.StoreHarness {
		s := memory.New()
		s.KeepDelivered = keep
		return outboxtest.StoreHarness{
			Store: s,
			Add:   s.Add,
			AddRolledBack: func(ctx context.Context, msgs ...*outbox.Message) error {
				tx := s.Begin()
				if err := tx.Add(ctx, msgs...); err != nil {
					return err
				}
				tx.Rollback()
				return nil
			},
			AddOpen: func(ctx context.Context, msgs ...*outbox.Message) (func() error, error) {
				tx := s.Begin()
				t.Cleanup(tx.Rollback)
				return tx.Commit, tx.Add(ctx, msgs...)
			},
		}
	}
}

func TestMemoryStore(t *testing.T) {
	outboxtest.RunStoreSuite(t, memoryHarness(true), outboxtest.StoreFeatures{
		Transactions: true, ConcurrentClaims: true, Notifier: true, Inspector: true, Retention: true,
	})
}

func TestMemoryStoreDeleteOnAck(t *testing.T) {
	outboxtest.RunStoreSuite(t, memoryHarness(false), outboxtest.StoreFeatures{
		Transactions: true, ConcurrentClaims: true, Notifier: true, Inspector: true,
	})
}

// An ordered claim takes whole runs of a few keys, the keys taking turns, instead of one message
// of every key: so several claims can be in flight over different keys.
func TestOrderedClaimKeysTakeTurns(t *testing.T) {
	s := memory.New()
	ctx := context.Background()
	var byKey = map[string][]string{}
	for i := range 9 {
		m, _ := outbox.NewMessage("T", i)
		m.Key = []string{"a", "b", "c"}[i%3]
		if err := s.Add(ctx, m); err != nil {
			t.Fatal(err)
		}
		byKey[m.Key] = append(byKey[m.Key], m.ID)
	}
	for turn, key := range []string{"a", "b", "c"} {
		token := fmt.Sprint("turn-", turn)
		got, err := s.Claim(ctx, outbox.ClaimRequest{Token: token, Limit: 3, Lease: time.Minute, Ordered: true})
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, len(got))
		for i, m := range got {
			ids[i] = m.ID
		}
		if !slices.Equal(ids, byKey[key]) {
			t.Fatalf("claim %d got %v, want key %s's run %v", turn, ids, key, byKey[key])
		}
	}
}
