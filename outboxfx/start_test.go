package outboxfx_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxfx"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/fx"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// unreachableListen is a store whose notifications never connect (a LISTEN host that accepts
// TCP and never answers): Listen blocks until its context ends.
type unreachableListen struct{ *memstore.Store }

func (unreachableListen) Listen(ctx context.Context) (<-chan struct{}, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// The relay's OnStart returns at once even when notifications cannot connect (a LISTEN host that
// accepts TCP and never answers), so a start deadline is never spent on it: before, the relay's
// start outlived the app's StartTimeout, fx gave up on the hook, and the relay went on publishing
// inside an app that had failed to start. And when another component fails the start, fx's
// rollback stops the relay.
func TestStartNeverWaitsAndFailedStartStopsTheRelay(t *testing.T) {
	for _, failLater := range []bool{false, true} {
		store := unreachableListen{memstore.New()}
		var relay *outbox.Relay
		opts := []fx.Option{
			fx.Supply(fx.Annotate(store, fx.As(new(outbox.Store)))),
			fx.Supply(fx.Annotate(memory.New(), fx.As(new(outbox.Transport)))),
			backendsWithoutStore(fast),
			outboxfx.Module,
			fx.Populate(&relay),
		}
		if failLater {
			opts = append(opts, fx.Invoke(func(lc fx.Lifecycle) {
				lc.Append(fx.Hook{OnStart: func(context.Context) error { return errors.New("database migration failed") }})
			}))
		}
		app := fx.New(opts...)
		// As fx.App.Run does with StartTimeout: start under a deadline.
		startCtx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := app.Start(startCtx)
		cancel()
		ctx := testCtx(t)
		if !failLater {
			if err != nil {
				t.Fatalf("start = %v: the relay's OnStart waited for its notifier", err)
			}
			if err := app.Stop(ctx); err != nil {
				t.Fatal(err)
			}
		} else if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("start = %v, want the other component's error", err)
		}
		// Stopped (by Stop, or by fx's rollback): a running relay would refuse to start again.
		if err := relay.Start(ctx); err != nil {
			t.Fatalf("failLater=%v: the relay is still running: %v", failLater, err)
		}
		if err := relay.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	goleak.VerifyNone(t)
}

// backendsWithoutStore supplies the logger and config a service provides, for tests that
// supply their own store.
func backendsWithoutStore(cfg outboxfx.Config) fx.Option {
	return fx.Options(fx.Supply(zap.NewNop(), cfg), fx.NopLogger)
}
