package outboxfx

import (
	"fmt"

	"github.com/txoutbox/outbox"
	"go.uber.org/fx"
)

// Consumer is outbox.Consumer, what every transport's NewConsumer returns: Start must not
// block on messages (it starts the consumer's goroutines and returns); Stop stops receiving,
// waits for the handlers in flight until its context ends and gives back what they did not
// finish.
type Consumer = outbox.Consumer

// ConsumerGroup is the fx value group ConsumerModule starts. Unlike middleware, consumers have
// no order among them, so a group is the natural way for several to be provided.
const ConsumerGroup = "outbox.consumers"

// ConsumerModule starts every Consumer of the ConsumerGroup group when the application starts
// and stops it when the application stops, like Module does for the relay. The service builds
// its consumers itself (over its own AWS config, with its own handlers, usually wrapping an
// inbox's Handle) and adds them to the group with AsConsumer:
//
//	fx.New(
//		fx.Provide(newPool, newInbox, outboxfx.AsConsumer(newOrderConsumer)),
//		outboxfx.ConsumerModule,
//	)
//
// Each consumer gets its own hooks, so when one fails to start, the ones already started are
// stopped and the application does not start.
var ConsumerModule = fx.Module("outbox-consumers", fx.Invoke(runConsumers))

// ConsumerParams is what ConsumerModule consumes from the application.
type ConsumerParams struct {
	fx.In

	Lifecycle fx.Lifecycle
	Consumers []Consumer `group:"outbox.consumers"`
}

// AsConsumer annotates a constructor whose result implements Consumer so that it joins the
// ConsumerGroup group. The constructor stays a plain function, usable without fx.
func AsConsumer(constructor any) any {
	return fx.Annotate(constructor, fx.As(new(Consumer)), fx.ResultTags(`group:"`+ConsumerGroup+`"`))
}

func runConsumers(p ConsumerParams) error {
	for i, c := range p.Consumers {
		if c == nil {
			return fmt.Errorf("outboxfx: consumer %d of group %s is nil", i, ConsumerGroup)
		}
		p.Lifecycle.Append(fx.StartStopHook(c.Start, c.Stop))
	}
	return nil
}
