package outboxfx_test

import (
	"context"
	"errors"
	memstore "github.com/txoutbox/outbox/store/memory"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxfx"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fast polls often, so a test need not wait a second for the first claim.
var fast = outboxfx.Config{Relay: outbox.Config{PollInterval: 20 * time.Millisecond}}

// backends supplies what a service provides itself: its store, logger and config.
func backends(store *memstore.Store, cfg outboxfx.Config) fx.Option {
	return fx.Options(
		fx.Supply(fx.Annotate(store, fx.As(new(outbox.Store)))),
		fx.Supply(zap.NewNop(), cfg),
		fx.NopLogger,
	)
}

func TestAppPublishesWhatTheStoreHolds(t *testing.T) {
	ctx := testCtx(t)
	store := memstore.New()
	broker := memory.New()
	var relay *outbox.Relay
	app := fxtest.New(t,
		backends(store, fast),
		fx.Supply(fx.Annotate(broker, fx.As(new(outbox.Transport)))),
		outboxfx.Module,
		fx.Populate(&relay),
	)
	app.RequireStart()

	msg := outboxtest.NewMessages(1, "ORDER_PLACED", "order-1")[0]
	if err := store.Add(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if err := broker.WaitFor(ctx, 1); err != nil {
		t.Fatal(err)
	}
	app.RequireStop()

	if got := broker.Received()[0]; got.ID != msg.ID || got.Type != "ORDER_PLACED" {
		t.Errorf("published %+v, want the written message", got)
	}
	if relay.Stats().Published != 1 {
		t.Errorf("relay stats %+v, want one published", relay.Stats())
	}
	// Stopped: the relay can be started again, which a running one refuses.
	if err := relay.Start(ctx); err != nil {
		t.Fatalf("relay still running after the app stopped: %v", err)
	}
	if err := relay.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t)
}

func TestValidateApp(t *testing.T) {
	store := memstore.New()
	err := fx.ValidateApp(
		backends(store, outboxfx.Config{}),
		fx.Supply(fx.Annotate(memory.New(), fx.As(new(outbox.Transport)))),
		outboxfx.Module,
	)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}

	// Without a transport the wiring is incomplete, and validation says what is missing.
	err = fx.ValidateApp(backends(store, outboxfx.Config{}), outboxfx.Module)
	if err == nil || !strings.Contains(err.Error(), "outbox.Transport") {
		t.Fatalf("validate without a transport: %v, want it to name outbox.Transport", err)
	}
}

// productionTransport stands in for a service's real broker client: it only records that the
// service tried to use it.
type productionTransport struct{ called atomic.Bool }

func (p *productionTransport) Publish(ctx context.Context, msgs []*outbox.Message) error {
	p.called.Store(true)
	return errors.New("production broker must not be reached from tests")
}

// ordersModule is how a service would wire its outbox: its own transport, and the outbox module.
func ordersModule(prod *productionTransport) fx.Option {
	return fx.Module("orders",
		fx.Provide(func() outbox.Transport { return prod }),
		outboxfx.Module,
	)
}

func TestSwapTransportWithDecorate(t *testing.T) {
	ctx := testCtx(t)
	store := memstore.New()
	prod := &productionTransport{}
	broker := memory.New()
	app := fxtest.New(t,
		backends(store, fast),
		ordersModule(prod),
		fx.Decorate(func(outbox.Transport) outbox.Transport { return broker }),
	)
	app.RequireStart()
	msgs := outboxtest.NewMessages(2, "ORDER_PLACED", "")
	if err := store.Add(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	waitErr := broker.WaitFor(ctx, 2)
	app.RequireStop()
	if waitErr != nil {
		t.Fatal(waitErr)
	}
	got := outboxtest.IDs(broker.Received())
	if len(got) != 2 || got[0] != msgs[0].ID || got[1] != msgs[1].ID {
		t.Errorf("memory transport received %v, want %v", got, outboxtest.IDs(msgs))
	}
	if prod.called.Load() {
		t.Error("the production transport was called despite the decoration")
	}
}

func TestBadConfigFailsStart(t *testing.T) {
	bad := outboxfx.Config{Relay: outbox.Config{BatchSize: -1}}
	app := fx.New(
		backends(memstore.New(), bad),
		fx.Supply(fx.Annotate(memory.New(), fx.As(new(outbox.Transport)))),
		outboxfx.Module,
	)
	err := app.Start(testCtx(t))
	if err == nil {
		_ = app.Stop(testCtx(t))
		t.Fatal("app started with a negative batch size")
	}
	if !strings.Contains(err.Error(), "BatchSize is negative") || !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Fatalf("start error = %v, want the relay's config error naming BatchSize", err)
	}
}

// order records the order in which middleware sees a batch.
type order struct {
	mu   sync.Mutex
	seen []string
}

func (o *order) middleware(name string) outbox.Middleware {
	return func(next outbox.Handler) outbox.Handler {
		return func(ctx context.Context, msgs []*outbox.Message) error {
			o.mu.Lock()
			o.seen = append(o.seen, name)
			o.mu.Unlock()
			return next(ctx, msgs)
		}
	}
}

func TestMiddlewareIsOneOrderedValue(t *testing.T) {
	ctx := testCtx(t)
	store := memstore.New()
	broker := memory.New()
	o := &order{}
	app := fxtest.New(t,
		backends(store, fast),
		fx.Supply(fx.Annotate(broker, fx.As(new(outbox.Transport)))),
		fx.Supply([]outbox.Middleware{o.middleware("outer"), o.middleware("inner")}),
		outboxfx.Module,
	)
	app.RequireStart()
	if err := store.Add(ctx, outboxtest.NewMessages(1, "ORDER_PLACED", "")...); err != nil {
		t.Fatal(err)
	}
	waitErr := broker.WaitFor(ctx, 1)
	app.RequireStop()
	if waitErr != nil {
		t.Fatal(waitErr)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if strings.Join(o.seen, ",") != "outer,inner" {
		t.Errorf("middleware ran as %v, want outer then inner", o.seen)
	}
}

func TestMiddlewareSetTwiceIsRejected(t *testing.T) {
	o := &order{}
	cfg := outboxfx.Config{Relay: outbox.Config{Middleware: []outbox.Middleware{o.middleware("a")}}}
	_, err := outboxfx.NewRelay(memstore.New(), memory.New(), []outbox.Middleware{o.middleware("b")}, zap.NewNop(), cfg)
	var ce *outbox.ConfigError
	if !errors.As(err, &ce) || ce.Field != "Middleware" {
		t.Fatalf("err = %v, want a ConfigError naming Middleware", err)
	}
}

func TestDisabledRelayIsNotStarted(t *testing.T) {
	ctx := testCtx(t)
	var relay *outbox.Relay
	app := fxtest.New(t,
		backends(memstore.New(), outboxfx.Config{Disabled: true}),
		fx.Supply(fx.Annotate(memory.New(), fx.As(new(outbox.Transport)))),
		outboxfx.Module,
		fx.Populate(&relay),
	)
	app.RequireStart()
	// A running relay refuses Start; a disabled one was never started.
	if err := relay.Start(ctx); err != nil {
		t.Fatalf("relay was started although disabled: %v", err)
	}
	if err := relay.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	app.RequireStop()
}

// TestStopFinishesInFlightPublish stops the app while a publish is in flight: OnStop waits for
// it and acknowledges the message, so nothing is left for another relay to publish again.
func TestStopFinishesInFlightPublish(t *testing.T) {
	ctx := testCtx(t)
	store := memstore.New()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	slow := outbox.TransportFunc(func(ctx context.Context, msgs []*outbox.Message) error {
		once.Do(func() { close(entered) })
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	app := fxtest.New(t,
		backends(store, fast),
		fx.Supply(fx.Annotate(slow, fx.As(new(outbox.Transport)))),
		outboxfx.Module,
	)
	app.RequireStart()
	if err := store.Add(ctx, outboxtest.NewMessages(1, "ORDER_PLACED", "")...); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the relay never published")
	}

	stopped := make(chan error, 1)
	go func() { stopped <- app.Stop(ctx) }()
	select {
	case err := <-stopped:
		t.Fatalf("stop returned (%v) while a publish was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	counts, err := store.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Pending != 0 {
		t.Errorf("after stop: %+v, want the in-flight message acknowledged", counts)
	}
}
