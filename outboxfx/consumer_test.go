package outboxfx_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxfx"
	"github.com/txoutbox/outbox/outboxtest"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

// The whole chain in one application: the relay publishes what the store holds, the consumer
// receives it; both start and stop with the app.
func TestConsumerModule(t *testing.T) {
	ctx := testCtx(t)
	store := memstore.New()
	broker := memory.New()
	var handled atomic.Int64
	newConsumer := func(tr *memory.Transport) (*memory.Consumer, error) {
		return memory.NewConsumer(context.Background(), memory.ConsumerConfig{Transport: tr, Handler: func(context.Context, *outbox.Message) error {
			handled.Add(1)
			return nil
		}})
	}
	var consumer *memory.Consumer
	app := fxtest.New(t,
		backends(store, fast),
		fx.Supply(broker, fx.Annotate(broker, fx.As(new(outbox.Transport)))),
		fx.Provide(newConsumer),
		fx.Provide(outboxfx.AsConsumer(func(c *memory.Consumer) *memory.Consumer { return c })),
		outboxfx.Module,
		outboxfx.ConsumerModule,
		fx.Populate(&consumer),
	)
	app.RequireStart()
	if err := store.Add(ctx, outboxtest.NewMessages(3, "ORDER_PLACED", "")...); err != nil {
		t.Fatal(err)
	}
	if err := broker.WaitFor(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if handled.Load() != 3 || consumer.Stats().Handled != 3 {
		t.Fatalf("handled %d, stats %+v", handled.Load(), consumer.Stats())
	}
	app.RequireStop()
	// Stopped with the app: the consumer is no longer subscribed.
	if err := broker.Publish(ctx, outboxtest.NewMessages(1, "LATE", "")); err != nil {
		t.Fatal(err)
	}
	if handled.Load() != 3 {
		t.Fatal("the consumer still handles messages after the app stopped")
	}
}

// fakeConsumer records its lifecycle, and can fail to start.
type fakeConsumer struct {
	name     string
	startErr error
	log      *[]string
}

func (f *fakeConsumer) Start(context.Context) error {
	*f.log = append(*f.log, "start "+f.name)
	return f.startErr
}

func (f *fakeConsumer) Stop(context.Context) error {
	*f.log = append(*f.log, "stop "+f.name)
	return nil
}

func TestConsumerModuleStartFailure(t *testing.T) {
	var log []string
	app := fx.New(
		fx.NopLogger,
		fx.Provide(
			outboxfx.AsConsumer(func() *fakeConsumer { return &fakeConsumer{name: "a", log: &log} }),
		),
		fx.Provide(fx.Annotate(func() *fakeConsumer {
			return &fakeConsumer{name: "b", log: &log, startErr: errors.New("queue missing")}
		}, fx.As(new(outboxfx.Consumer)), fx.ResultTags(`group:"`+outboxfx.ConsumerGroup+`"`))),
		outboxfx.ConsumerModule,
	)
	err := app.Start(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "queue missing") {
		t.Fatalf("start: %v", err)
	}
	// The consumer that started is stopped again; the one that failed is not stopped.
	if got := strings.Join(log, ", "); got != "start a, start b, stop a" && got != "start b" {
		t.Fatalf("lifecycle: %s", got)
	}
}

func TestConsumerModuleWiring(t *testing.T) {
	if err := fx.ValidateApp(
		fx.Provide(outboxfx.AsConsumer(func() *fakeConsumer { return &fakeConsumer{log: new([]string)} })),
		outboxfx.ConsumerModule,
	); err != nil {
		t.Fatal(err)
	}
	// No consumers at all is valid: the module then does nothing.
	app := fxtest.New(t, fx.NopLogger, outboxfx.ConsumerModule)
	app.RequireStart().RequireStop()
}
