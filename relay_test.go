package outbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestRelayStartTwice(t *testing.T) {
	r := startRelay(t, memstore.New(), memory.New(), outbox.Config{})
	if err := r.Start(context.Background()); !errors.Is(err, outbox.ErrRunning) {
		t.Fatalf("second start = %v, want ErrRunning", err)
	}
	stopRelay(t, r)
	stopRelay(t, r) // stopping a stopped relay is fine
}

// With polling far away, only the store's notification can explain a quick delivery.
func TestRelayWakesOnNotification(t *testing.T) {
	st := memstore.New()
	tr := memory.New()
	startRelay(t, st, tr, outbox.Config{PollInterval: time.Hour})
	time.Sleep(50 * time.Millisecond) // the first claim found nothing; now the relay waits
	write(t, st, 1, noKey)
	waitDelivered(t, tr, 1, 2*time.Second)
}

// An idle relay claims once per poll interval, not once per worker.
func TestRelayIdleLoad(t *testing.T) {
	st := &countingStore{Store: memstore.New()}
	startRelay(t, st, memory.New(), outbox.Config{PollInterval: 50 * time.Millisecond, Concurrency: 8})
	time.Sleep(520 * time.Millisecond)
	if n := st.claims.Load(); n > 13 {
		t.Fatalf("%d claims in ~10 poll intervals with 8 workers; want about one per interval", n)
	}
}

// A full batch makes the relay claim again at once rather than wait for the next poll.
func TestRelayDrainsWithoutWaitingForPoll(t *testing.T) {
	st := memstore.New()
	tr := memory.New()
	write(t, st, 5_000, noKey)
	startRelay(t, st, tr, outbox.Config{PollInterval: time.Hour, BatchSize: 100})
	waitDelivered(t, tr, 5_000, 10*time.Second)
}

// Stop's deadline cancels a hung publish, and the messages are released for another relay at
// once instead of waiting for their lease to expire.
func TestStopReleasesHungPublish(t *testing.T) {
	st := memstore.New()
	hung := outboxtest.NewFaultyTransport(memory.New(), 8)
	hung.SetHang(true)
	write(t, st, 10, noKey)
	r, err := outbox.NewRelay(st, hung, fast(outbox.Config{Lease: time.Hour, PublishTimeout: 30 * time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a publish to hang", func() bool { return hung.Calls() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := r.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop = %v, want the deadline error", err)
	}
	// The deadline plus at most the one-second grace for releasing what the relay held.
	if took := time.Since(began); took > 1500*time.Millisecond {
		t.Fatalf("stop took %v past its 100ms deadline", took)
	}
	msgs, err := st.Claim(context.Background(), outbox.ClaimRequest{Token: "next", Limit: 100, Lease: time.Second})
	if err != nil || len(msgs) != 10 {
		t.Fatalf("after stop, %d of 10 messages claimable (%v)", len(msgs), err)
	}
	for _, m := range msgs {
		if m.Attempts != 0 {
			t.Fatalf("a publish aborted by Stop charged %d attempt(s)", m.Attempts)
		}
	}
}

// Run stops gracefully when its context ends.
func TestRunReturnsAfterContextEnds(t *testing.T) {
	st := memstore.New()
	tr := memory.New()
	write(t, st, 100, noKey)
	r, err := outbox.NewRelay(st, tr, fast(outbox.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	waitDelivered(t, tr, 100, 5*time.Second)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// Failures are logged with the fields operators need; dead letters at error level.
func TestRelayLogs(t *testing.T) {
	observed, logs := observer.New(zap.DebugLevel)
	st := memstore.New()
	faulty := outboxtest.NewFaultyTransport(memory.New(), 9)
	poison := write(t, st, 1, func(int) string { return "order-1" })
	faulty.FailIDs(errPermanent, poison[0].ID)
	startRelay(t, st, faulty, corecfg(zap.New(observed)))
	eventually(t, "a dead-letter log", func() bool { return logs.FilterMessage("message dead-lettered").Len() == 1 })
	entry := logs.FilterMessage("message dead-lettered").All()[0]
	fields := entry.ContextMap()
	if entry.Level != zap.ErrorLevel || fields["id"] != poison[0].ID || fields["key"] != "order-1" || fields["type"] != "EVENT" || fields["permanent"] != true {
		t.Fatalf("dead-letter log %v %v", entry.Level, fields)
	}
}

// Middleware can tell a message's last attempt from the publish context.
func TestRelayPassesMaxAttemptsToMiddleware(t *testing.T) {
	st := memstore.New()
	tr := memory.New()
	seen := make(chan int, 1)
	spy := func(next outbox.Handler) outbox.Handler {
		return func(ctx context.Context, msgs []*outbox.Message) error {
			select {
			case seen <- backend.MaxAttempts(ctx):
			default:
			}
			return next(ctx, msgs)
		}
	}
	write(t, st, 1, noKey)
	startRelay(t, st, tr, outbox.Config{MaxAttempts: 7, Middleware: []outbox.Middleware{spy}})
	if got := <-seen; got != 7 {
		t.Fatalf("MaxAttempts(ctx) = %d in middleware, want 7", got)
	}
	if backend.MaxAttempts(context.Background()) != 0 {
		t.Fatal("MaxAttempts outside a relay must be 0")
	}
}
