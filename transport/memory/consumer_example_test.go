package memory_test

import (
	"context"
	"fmt"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/memory"
)

// A memory consumer runs the handler a service runs behind a real broker, in a test or the
// quickstart, without one.
func ExampleNewConsumer() {
	ctx := context.Background()
	broker := memory.New()
	c, err := memory.NewConsumer(ctx, memory.ConsumerConfig{
		Transport: broker,
		Handler: func(ctx context.Context, m *outbox.Message) error {
			fmt.Printf("%s %s\n", m.Type, m.Payload)
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	if err := c.Start(ctx); err != nil {
		panic(err)
	}

	m, _ := outbox.NewMessage("ORDER_PLACED", map[string]string{"order": "o-1"})
	if err := broker.Publish(ctx, []*outbox.Message{m}); err != nil { // what the relay calls
		panic(err)
	}
	fmt.Println(c.Stats().Handled)
	if err := c.Stop(ctx); err != nil {
		panic(err)
	}
	// Output:
	// ORDER_PLACED {"order":"o-1"}
	// 1
}
