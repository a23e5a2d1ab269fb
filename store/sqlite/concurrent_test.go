package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/sqlite"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Many writers and two relays, each on its own store over one file (two "processes"), all at
// once: every event arrives exactly once, in key order, and nobody sees SQLITE_BUSY — not the
// writers, and not the relays (whose store errors would show up as retried warnings).
func TestConcurrentWritersAndRelays(t *testing.T) {
	writers, perWriter := 12, 40
	if testing.Short() {
		writers, perWriter = 4, 20
	}
	for _, conns := range []int{1, 4} {
		t.Run(fmt.Sprintf("conns=%d", conns), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			stores := []*sqlite.Store{
				usersStoreAt(t, sqlite.Config{Path: path, MaxOpenConns: conns}, true),
				usersStoreAt(t, sqlite.Config{Path: path, MaxOpenConns: conns}, false),
			}
			transport := memory.New()
			warnings, logs := observer.New(zap.WarnLevel)
			var stops []func(*testing.T)
			for i, s := range stores {
				stops = append(stops, startRelay(t, s, transport, zap.New(warnings).Named(fmt.Sprint("relay", i))))
			}

			ctx := t.Context()
			var mu sync.Mutex
			var written []*outbox.Message
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				s := stores[w%len(stores)]
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perWriter {
						name := fmt.Sprintf("user-%d-%d", w, i)
						created, updated := msg("USER_CREATED", name), msg("USER_UPDATED", name)
						_, err := sqlite.Execute(ctx, s, insertUser(name), created, updated)
						if err != nil {
							errs <- fmt.Errorf("writer %d: %w", w, err)
							return
						}
						mu.Lock()
						written = append(written, created, updated)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := transport.WaitFor(waitCtx, len(written)); err != nil {
				t.Fatalf("%d of %d delivered: %v", transport.Len(), len(written), err)
			}
			for _, stop := range stops {
				stop(t)
			}
			outboxtest.CheckDelivery(t, written, transport.Received(), outboxtest.DeliveryCheck{Ordered: true})
			for _, e := range logs.All() {
				t.Errorf("relay logged %s: %s %v", e.Level, e.Message, e.ContextMap())
			}
		})
	}
}

// startRelay starts an ordered relay on s and returns its (idempotent) graceful stop, which
// also runs when t ends.
func startRelay(t *testing.T, s *sqlite.Store, tr outbox.Transport, log *zap.Logger) func(*testing.T) {
	t.Helper()
	r, err := outbox.NewRelay(s, tr, outbox.Config{BatchSize: 50, Logger: log, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func(t *testing.T) {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Stop(ctx); err != nil {
			t.Errorf("relay stop: %v", err)
		}
	}
	t.Cleanup(func() { stop(t) })
	return stop
}

func usersStoreAt(t *testing.T, cfg sqlite.Config, create bool) *sqlite.Store {
	t.Helper()
	s := open(t, cfg)
	if create {
		if _, err := s.DB().Exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)`); err != nil {
			t.Fatal(err)
		}
	}
	return s
}
