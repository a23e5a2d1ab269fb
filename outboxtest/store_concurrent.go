package outboxtest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

// claimers returns n stores over the same data, one per simulated relay process.
func (h StoreHarness) claimers(t *testing.T, n int) []outbox.Store {
	stores := make([]outbox.Store, n)
	for i := range stores {
		stores[i] = h.Store
		if h.Reopen != nil && i > 0 {
			stores[i] = h.Reopen(t)
		}
	}
	return stores
}

func (s *storeSuite) testConcurrent(t *testing.T) {
	if !s.f.ConcurrentClaims {
		t.Skip("store does not support concurrent claimers")
	}
	t.Run("NoMessageHeldTwice", func(t *testing.T) {
		h := s.newStore(t)
		const total = 2000
		for i := 0; i < total; i += 500 {
			mustAdd(t, h, NewMessages(500, "T", "")...)
		}
		var mu sync.Mutex
		seen := map[string]string{}
		var wg sync.WaitGroup
		var failures errorList
		for i, st := range h.claimers(t, 8) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := owner(fmt.Sprint("claimer", i))
				for {
					msgs, err := st.Claim(testCtx(t), outbox.ClaimRequest{Token: o, Limit: 37, Lease: time.Minute})
					if err != nil {
						failures.add(err)
						return
					}
					if len(msgs) == 0 {
						return
					}
					mu.Lock()
					for _, m := range msgs {
						if prev, dup := seen[m.ID]; dup {
							mu.Unlock()
							failures.add(fmt.Errorf("message %s claimed by %s and %s", m.ID, prev, o))
							return
						}
						seen[m.ID] = o
					}
					mu.Unlock()
					if _, err := st.Ack(testCtx(t), o, IDs(msgs)); err != nil {
						failures.add(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		failures.check(t)
		if len(seen) != total {
			t.Fatalf("claimed %d distinct messages, want %d", len(seen), total)
		}
	})
	t.Run("OrderedKeysNeverOverlap", func(t *testing.T) {
		h := s.newStore(t)
		const keys, perKey = 40, 15
		index := map[string]int{} // message ID -> position within its key
		for round := range perKey {
			var batch []*outbox.Message
			for k := range keys {
				batch = append(batch, NewMessages(1, "T", fmt.Sprint("key-", k))...)
			}
			mustAdd(t, h, batch...)
			for _, m := range batch {
				index[m.ID] = round
			}
		}
		var mu sync.Mutex
		next := map[string]int{}      // key -> position expected next
		inFlight := map[string]bool{} // key -> a message of it is held
		var wg sync.WaitGroup
		var failures errorList
		for i, st := range h.claimers(t, 8) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := owner(fmt.Sprint("ordered", i))
				for empty := 0; empty < 20; {
					msgs, err := st.Claim(testCtx(t), outbox.ClaimRequest{Token: o, Limit: 7, Lease: time.Minute, Ordered: true})
					if err != nil {
						failures.add(err)
						return
					}
					if len(msgs) == 0 {
						empty++
						time.Sleep(5 * time.Millisecond)
						continue
					}
					empty = 0
					mu.Lock()
					run := map[string]int{} // key -> messages of it in this claim
					for _, m := range msgs {
						if inFlight[m.Key] {
							failures.add(fmt.Errorf("key %s held by two claims at once", m.Key))
						}
						if want := next[m.Key] + run[m.Key]; index[m.ID] != want {
							failures.add(fmt.Errorf("key %s: claimed position %d, want %d", m.Key, index[m.ID], want))
						}
						run[m.Key]++
					}
					for k := range run {
						inFlight[k] = true
					}
					mu.Unlock()
					time.Sleep(time.Millisecond) // hold the lease a little, as a publish would
					mu.Lock()
					for k, n := range run {
						inFlight[k] = false
						next[k] += n
					}
					mu.Unlock()
					if _, err := st.Ack(testCtx(t), o, IDs(msgs)); err != nil {
						failures.add(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		failures.check(t)
		for k := range keys {
			if got := next[fmt.Sprint("key-", k)]; got != perKey {
				t.Fatalf("key-%d: %d messages delivered, want %d", k, got, perKey)
			}
		}
	})
}

// errorList collects failures from goroutines, which must not call t.Fatal.
type errorList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorList) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errorList) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, err := range l.errs {
		if i == 10 {
			t.Fatalf("... and %d more", len(l.errs)-i)
		}
		t.Error(err)
	}
	if len(l.errs) > 0 {
		t.FailNow()
	}
}
