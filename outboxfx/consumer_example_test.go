package outboxfx_test

import (
	"context"
	"fmt"

	"go.uber.org/fx"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxfx"
	"github.com/txoutbox/outbox/transport/memory"
)

// A consumer started and stopped with the application. In a service the constructor builds an
// sqs.Consumer over the service's own AWS config, with a handler wrapping an inbox's Handle.
func ExampleConsumerModule() {
	broker := memory.New()
	newConsumer := func() (*memory.Consumer, error) {
		return memory.NewConsumer(context.Background(), memory.ConsumerConfig{Transport: broker, Handler: func(ctx context.Context, m *outbox.Message) error {
			fmt.Println("handled", m.Type)
			return nil
		}})
	}
	app := fx.New(fx.NopLogger, fx.Provide(outboxfx.AsConsumer(newConsumer)), outboxfx.ConsumerModule)
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	m, _ := outbox.NewMessage("ORDER_PLACED", map[string]string{"order": "o-1"})
	_ = broker.Publish(ctx, []*outbox.Message{m})
	if err := app.Stop(ctx); err != nil {
		panic(err)
	}
	// Output: handled ORDER_PLACED
}
