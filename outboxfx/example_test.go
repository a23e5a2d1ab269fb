package outboxfx_test

import (
	"context"
	"fmt"
	memstore "github.com/txoutbox/outbox/store/memory"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxfx"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/fx"
	"go.uber.org/zap"
)

// A service provides its store, transport, logger and config; the module runs the relay for
// the application's lifetime. Here the store and broker are in memory; a real service provides
// its PostgreSQL store and SQS transport instead, and outboxfx.ConfigFromEnv as its Config.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store := memstore.New()
	broker := memory.New()

	app := fx.New(
		fx.Supply(
			fx.Annotate(store, fx.As(new(outbox.Store))),
			fx.Annotate(broker, fx.As(new(outbox.Transport))),
			zap.NewNop(),
			outboxfx.Config{Relay: outbox.Config{PollInterval: 50 * time.Millisecond}},
		),
		outboxfx.Module,
		fx.NopLogger,
	)
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	defer func() {
		if err := app.Stop(ctx); err != nil {
			panic(err)
		}
	}()

	event, _ := outbox.NewMessage("USER_CREATED", map[string]string{"email": "ada@example.com"})
	if err := store.Add(ctx, event); err != nil {
		panic(err)
	}
	if err := broker.WaitFor(ctx, 1); err != nil {
		panic(err)
	}
	fmt.Println(broker.Received()[0].Type)
	// Output: USER_CREATED
}
