package fxmodule_test

import (
	"context"
	"fmt"
	memstore "github.com/txoutbox/outbox/store/memory"
	"time"

	"github.com/txoutbox/outbox/core"
	"github.com/txoutbox/outbox/fxmodule"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/fx"
	"go.uber.org/zap"
)

// A service provides its store, transport, logger and config; the module runs the relay for
// the application's lifetime. Here the store and broker are in memory; a real service provides
// its PostgreSQL store and SQS transport instead, and fxmodule.ConfigFromEnv as its Config.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store := memstore.New()
	broker := memory.New()

	app := fx.New(
		fx.Supply(
			fx.Annotate(store, fx.As(new(core.Store))),
			fx.Annotate(broker, fx.As(new(core.Transport))),
			zap.NewNop(),
			fxmodule.Config{Relay: core.Config{PollInterval: 50 * time.Millisecond}},
		),
		fxmodule.Module,
		fx.NopLogger,
	)
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	defer app.Stop(ctx)

	event, _ := core.NewMessage("USER_CREATED", map[string]string{"email": "ada@example.com"})
	if err := store.Add(ctx, event); err != nil {
		panic(err)
	}
	if err := broker.WaitFor(ctx, 1); err != nil {
		panic(err)
	}
	fmt.Println(broker.Received()[0].Type)
	// Output: USER_CREATED
}
