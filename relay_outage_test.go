package outbox_test

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Promise 7: a broker outage pauses the relay (a log line when it starts and ends, Stats shows
// it), charges no attempt even with MaxAttempts 1, and delivery resumes once the broker is back.
func TestOutagePausesWithoutCharging(t *testing.T) {
	observed, logs := observer.New(zap.InfoLevel)
	st := memstore.New()
	tr := memory.New()
	tr.FailAll(outbox.Unavailable(errors.New("dial tcp: connection refused")))
	written := write(t, st, 50, noKey)
	var calls atomic.Int64
	counting := outbox.TransportFunc(func(ctx context.Context, msgs []*outbox.Message) error {
		calls.Add(1)
		return tr.Publish(ctx, msgs)
	})
	r := startRelay(t, st, counting, outbox.Config{MaxAttempts: 1, Logger: zap.New(observed)})
	eventually(t, "a few probes", func() bool { return calls.Load() >= 3 })
	if s := r.Stats(); s.TransportDownSince.IsZero() || s.Dead != 0 || s.Failed != 0 || s.TransportError == "" {
		t.Fatalf("stats during the outage: %+v", s)
	}
	if logs.FilterMessageSnippet("transport unavailable").Len() != 1 {
		t.Fatalf("want one log line when the outage began, got %d", logs.FilterMessageSnippet("transport unavailable").Len())
	}
	tr.Heal()
	waitDelivered(t, tr, len(written), 10*time.Second)
	if s := r.Stats(); !s.TransportDownSince.IsZero() || s.Dead != 0 || s.Failed != 0 {
		t.Fatalf("stats after the outage: %+v", s)
	}
	if logs.FilterMessageSnippet("transport available again").Len() != 1 {
		t.Fatal("no log line when the outage ended")
	}
	for _, m := range tr.Received() {
		if m.Attempts != 0 {
			t.Fatalf("%s was charged %d attempt(s) by an outage", m.ID, m.Attempts)
		}
	}
}

// A publish that runs out of PublishTimeout is an outage (a hung broker), not the messages'
// fault; a message that only it fails as unavailable is released without an attempt while the
// rest of its batch goes out.
func TestTimeoutAndPartialUnavailableChargeNothing(t *testing.T) {
	st := memstore.New()
	tr := memory.New()
	written := write(t, st, 10, noKey)
	var hung atomic.Bool
	hung.Store(true)
	transport := outbox.TransportFunc(func(ctx context.Context, msgs []*outbox.Message) error {
		if hung.Load() {
			<-ctx.Done()
			return ctx.Err()
		}
		return tr.Publish(ctx, msgs)
	})
	tr.FailIDs(outbox.Unavailable(errors.New("queue briefly missing")), written[0].ID)
	r := startRelay(t, st, transport, outbox.Config{MaxAttempts: 1, Lease: time.Second, PublishTimeout: 50 * time.Millisecond})
	eventually(t, "the hung broker to pause the relay", func() bool { return !r.Stats().TransportDownSince.IsZero() })
	hung.Store(false)
	waitDelivered(t, tr, 9, 10*time.Second)
	tr.Heal()
	waitDelivered(t, tr, 10, 10*time.Second)
	if s := r.Stats(); s.Dead != 0 || s.Failed != 0 || s.Released == 0 {
		t.Fatalf("stats %+v: want nothing dead or failed, some released", s)
	}
}

// Start never waits for the store: a notifier that cannot connect is set up in the background
// while the relay polls.
type hangingListen struct {
	*memstore.Store
	listening chan struct{}
}

func (s hangingListen) Listen(ctx context.Context) (<-chan struct{}, error) {
	close(s.listening)
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestStartDoesNotWaitForTheNotifier(t *testing.T) {
	st := hangingListen{Store: memstore.New(), listening: make(chan struct{})}
	tr := memory.New()
	write(t, st.Store, 5, noKey)
	r, err := outbox.NewRelay(st, tr, fast(outbox.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	started := make(chan error, 1)
	go func() { started <- r.Start(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start waited for the notifier")
	}
	<-st.listening
	waitDelivered(t, tr, 5, 5*time.Second) // by polling
	stopRelay(t, r)
}

// Start refuses a context that already ended, and leaves nothing running.
func TestStartHonoursItsContext(t *testing.T) {
	r, err := outbox.NewRelay(memstore.New(), memory.New(), outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("start with an ended context = %v", err)
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Fatalf("stop after a refused start = %v", err)
	}
}

// hungNack is a database that stopped answering settles: calls block until their context ends.
type hungNack struct{ *memstore.Store }

func (hungNack) Nack(ctx context.Context, _ string, _ []outbox.Failure) (int, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

// Stop keeps its deadline, plus at most a second for releasing what it holds, even when the
// release itself hangs; the log says the messages come back when their lease expires.
func TestStopKeepsItsDeadlineWithAHungStore(t *testing.T) {
	observed, logs := observer.New(zap.InfoLevel)
	st := hungNack{memstore.New()}
	write(t, st.Store, 5, noKey)
	var publishing atomic.Bool
	hung := outbox.TransportFunc(func(ctx context.Context, _ []*outbox.Message) error {
		publishing.Store(true)
		<-ctx.Done()
		return ctx.Err()
	})
	r, err := outbox.NewRelay(st, hung, fast(outbox.Config{Lease: 30 * time.Second, PublishTimeout: 20 * time.Second, Logger: zap.New(observed)}))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a publish to hang", publishing.Load)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	_ = r.Stop(ctx)
	if took := time.Since(began); took > 1700*time.Millisecond {
		t.Fatalf("Stop(200ms) took %v with a hung store, want at most the deadline plus 1s", took)
	}
	if logs.FilterMessageSnippet("lease expires").Len() == 0 {
		t.Fatal("no log line saying the unreleased messages come back when their lease expires")
	}
}

func TestBackoffSaturates(t *testing.T) {
	for _, b := range []outbox.Backoff{
		{Max: math.MaxInt64},
		{Initial: time.Hour, Max: math.MaxInt64, Multiplier: 1000},
		{Initial: math.MaxInt64 / 2, Max: math.MaxInt64, Jitter: 0.9},
	} {
		for n := 1; n < 300; n++ {
			if d := b.Delay(n); d < 0 || d > b.Max {
				t.Fatalf("%+v: delay %d = %v, want within [0, Max]", b, n, d)
			}
		}
	}
}
