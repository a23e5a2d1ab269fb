package memory_test

import (
	"context"
	"testing"

	"github.com/txoutbox/outbox/core"
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
			AddRolledBack: func(ctx context.Context, msgs ...*core.Message) error {
				tx := s.Begin()
				if err := tx.Add(ctx, msgs...); err != nil {
					return err
				}
				tx.Rollback()
				return nil
			},
			AddOpen: func(ctx context.Context, msgs ...*core.Message) (func() error, error) {
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
