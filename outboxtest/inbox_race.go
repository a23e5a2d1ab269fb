package outboxtest

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/txoutbox/outbox"
)

func (s *inboxSuite) needConcurrent(t *testing.T) {
	t.Helper()
	s.needTransactions(t)
	if !s.f.Concurrent {
		t.Skip("the inbox does not take concurrent deliveries")
	}
}

type handleResult struct {
	dup bool
	err error
}

// race delivers m twice: the first delivery applies its effect and then holds its transaction
// open until the second has started (and, where the harness can tell, is blocked behind the
// first's record); then the first finishes with firstErr.
func (s *inboxSuite) race(t *testing.T, h InboxHarness, m *outbox.Message, firstErr error) (first, second handleResult, secondRan bool) {
	t.Helper()
	ctx := testCtx(t)
	entered, release := make(chan struct{}), make(chan struct{})
	firstDone := make(chan handleResult, 1)
	go func() {
		dup, err := h.Handle(ctx, "billing", m, func(ctx context.Context, effect func(context.Context) error) error {
			if err := effect(ctx); err != nil {
				return err
			}
			close(entered)
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			return firstErr
		})
		firstDone <- handleResult{dup, err}
	}()
	select {
	case <-entered:
	case r := <-firstDone:
		t.Fatalf("the first delivery ended before its handler ran: %+v", r)
	}

	var ran atomic.Bool
	secondDone := make(chan handleResult, 1)
	go func() {
		dup, err := h.Handle(ctx, "billing", m.Clone(), func(ctx context.Context, effect func(context.Context) error) error {
			ran.Store(true)
			return effect(ctx)
		})
		secondDone <- handleResult{dup, err}
	}()
	if h.WaitBlocked != nil {
		if err := h.WaitBlocked(ctx); err != nil {
			close(release)
			t.Fatalf("waiting for the second delivery to block behind the first: %v", err)
		}
	}
	select {
	case r := <-secondDone:
		// Only possible without a blocking check: the second must not have gone ahead.
		if r.err == nil && !r.dup {
			close(release)
			t.Fatal("the second delivery was processed while the first one's transaction was still open")
		}
		secondDone <- r
	default:
	}
	close(release)
	return <-firstDone, <-secondDone, ran.Load()
}

func (s *inboxSuite) testRace(t *testing.T) {
	s.needConcurrent(t)
	t.Parallel()
	h := s.newInbox(t)
	m := inboxMessage(t)
	first, second, secondRan := s.race(t, h, m, nil)
	if first.err != nil || first.dup {
		t.Fatalf("first delivery: %+v, want processed", first)
	}
	if second.err != nil || !second.dup {
		t.Fatalf("second delivery: %+v, want a duplicate", second)
	}
	if secondRan {
		t.Fatal("the losing delivery's handler ran")
	}
	mustEffects(t, h, "billing", m.ID, 1)
	mustRecorded(t, h, "billing", m.ID, true)
}

func (s *inboxSuite) testRaceWinnerRollsBack(t *testing.T) {
	s.needConcurrent(t)
	t.Parallel()
	h := s.newInbox(t)
	m := inboxMessage(t)
	boom := errors.New("first delivery failed")
	first, second, secondRan := s.race(t, h, m, boom)
	if !errors.Is(first.err, boom) {
		t.Fatalf("first delivery: %+v, want its handler's error", first)
	}
	// The record the second delivery waited for never committed: the second one processes.
	if second.err != nil || second.dup || !secondRan {
		t.Fatalf("second delivery: %+v (handler ran: %t), want processed", second, secondRan)
	}
	mustEffects(t, h, "billing", m.ID, 1)
}

func (s *inboxSuite) testManyRacers(t *testing.T) {
	s.needConcurrent(t)
	t.Parallel()
	h := s.newInbox(t)
	const workers, n = 6, 15
	msgs := make([]*outbox.Message, n)
	for i := range msgs {
		msgs[i] = inboxMessage(t)
	}
	ctx := testCtx(t)
	var processed, dups atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			order := rand.New(rand.NewPCG(uint64(w), 7)).Perm(n)
			for _, i := range order {
				dup, err := h.Handle(ctx, "billing", msgs[i].Clone(), applyEffect)
				if err != nil {
					errs <- err
					return
				}
				if dup {
					dups.Add(1)
				} else {
					processed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent delivery failed: %v", err)
	}
	if processed.Load() != n || dups.Load() != (workers-1)*n {
		t.Fatalf("processed %d, duplicates %d; want %d and %d", processed.Load(), dups.Load(), n, (workers-1)*n)
	}
	for _, m := range msgs {
		mustEffects(t, h, "billing", m.ID, 1)
	}
}
