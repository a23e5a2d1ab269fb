package middleware_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/txoutbox/outbox/backend"
	memstore "github.com/txoutbox/outbox/store/memory"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/middleware/dedup"
	"github.com/txoutbox/outbox/middleware/logging"
	"github.com/txoutbox/outbox/middleware/metrics"
	"github.com/txoutbox/outbox/middleware/retry"
	"github.com/txoutbox/outbox/middleware/tracing"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A relay with every middleware, in the recommended order. The tracing write hook goes on the
// store, so events carry the trace of the request that wrote them.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	logger := zap.NewNop()

	trace := tracing.Config{} // global TracerProvider, W3C trace context
	store := memstore.New()
	store.WriteHooks = []backend.WriteHook{trace.WriteHook()}

	seen, err := dedup.NewMemoryStore(dedup.MemoryConfig{})
	if err != nil {
		panic(err)
	}
	var mws []outbox.Middleware
	for _, build := range []func() (outbox.Middleware, error){
		logging.Config{Logger: logger}.Middleware,
		metrics.Config{}.Middleware,
		dedup.Config{Store: seen, Logger: logger}.Middleware,
		trace.Middleware,
		retry.Config{}.Middleware,
	} {
		mw, err := build()
		if err != nil {
			panic(err)
		}
		mws = append(mws, mw)
	}

	broker := memory.New()
	relay, err := outbox.NewRelay(store, broker, outbox.Config{Middleware: mws, Logger: logger})
	if err != nil {
		panic(err)
	}
	if err := relay.Start(ctx); err != nil {
		panic(err)
	}

	event, err := outbox.NewMessage("ORDER_PLACED", map[string]string{"order": "42"})
	if err != nil {
		panic(err)
	}
	if err := store.Add(ctx, event); err != nil {
		panic(err)
	}
	if err := broker.WaitFor(ctx, 1); err != nil {
		panic(err)
	}
	if err := relay.Stop(ctx); err != nil { // acknowledges what is in flight
		panic(err)
	}
	fmt.Println(broker.Received()[0].Type, string(broker.Received()[0].Payload))
	// Output: ORDER_PLACED {"order":"42"}
}
