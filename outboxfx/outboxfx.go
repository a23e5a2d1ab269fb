// Package outboxfx runs an outbox relay inside a go.uber.org/fx application.
//
// Module builds a *outbox.Relay from what the service already provides, and starts and stops it
// with the application:
//
//   - outbox.Store and outbox.Transport: the service's backends (the store over its own pool or
//     client, the transport over its own AWS config). The module provides neither.
//   - []outbox.Middleware, optional: the publish middleware in order, the first outermost. It is
//     one plain value, not a value group, because the order matters.
//   - *zap.Logger or *slog.Logger, optional: the relay's logger, unless Config.Relay.Logger is
//     set (zap first when the application provides both; neither: no logs).
//   - Config: the relay's tuning, e.g. from ConfigFromEnv.
//
// OnStart launches the relay's goroutines and returns at once; OnStop lets in-flight batches
// finish and be acknowledged within the stop timeout, then returns. A relay whose Config is
// invalid fails the application at construction, naming the field.
//
//	fx.New(
//		fx.Provide(newPool, newStore, newSQSTransport, zap.NewProduction, outboxfx.ConfigFromEnv),
//		fx.Provide(func(log *zap.Logger) ([]outbox.Middleware, error) {
//			logs, err := logging.Config{Logger: log}.Middleware()
//			if err != nil {
//				return nil, err
//			}
//			retries, err := retry.Config{}.Middleware()
//			if err != nil {
//				return nil, err
//			}
//			return []outbox.Middleware{logs, retries}, nil
//		}),
//		outboxfx.Module,
//	)
//
// In tests, swap the transport for transport/memory with
// fx.Decorate(func(outbox.Transport) outbox.Transport { return broker }).
package outboxfx

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/txoutbox/outbox"
	"go.uber.org/fx"
	"go.uber.org/zap"
)

// Module provides *outbox.Relay and ties it to the application's lifecycle.
var Module = fx.Module("outbox",
	fx.Provide(provide),
	fx.Invoke(runRelay),
)

// runRelay makes fx build the relay, and so register its lifecycle hooks, even when nothing in
// the application asks for a *outbox.Relay.
func runRelay(*outbox.Relay) {}

// Params is what Module consumes from the application.
type Params struct {
	fx.In

	Lifecycle  fx.Lifecycle
	Store      outbox.Store
	Transport  outbox.Transport
	Middleware []outbox.Middleware `optional:"true"`
	Logger     *zap.Logger         `optional:"true"`
	Slog       *slog.Logger        `optional:"true"`
	Config     Config
}

func provide(p Params) (*outbox.Relay, error) {
	logger := p.Logger
	if logger == nil && p.Slog != nil {
		logger = outbox.SlogLogger(p.Slog)
	}
	relay, err := NewRelay(p.Store, p.Transport, p.Middleware, logger, p.Config)
	if err != nil {
		return nil, err
	}
	if p.Config.Disabled {
		relay.Config().Logger.Info("outbox relay disabled by config; this process only writes")
		return relay, nil
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(ctx context.Context) error { return relay.Start(ctx) },
		OnStop:  func(ctx context.Context) error { return relay.Stop(ctx) },
	})
	return relay, nil
}

// NewRelay builds the relay Module provides, without fx: mws and logger fill
// cfg.Relay.Middleware and cfg.Relay.Logger. Setting middleware both ways is an error, because
// no order between the two lists would be obviously right.
func NewRelay(store outbox.Store, transport outbox.Transport, mws []outbox.Middleware, logger *zap.Logger, cfg Config) (*outbox.Relay, error) {
	rc := cfg.Relay
	if len(mws) > 0 {
		if len(rc.Middleware) > 0 {
			return nil, fmt.Errorf("outboxfx: %w", &outbox.ConfigError{Component: "relay", Field: "Middleware",
				Problem: "is set in Config.Relay and provided as []outbox.Middleware; provide one list"})
		}
		rc.Middleware = mws
	}
	if rc.Logger == nil {
		rc.Logger = logger
	}
	relay, err := outbox.NewRelay(store, transport, rc)
	if err != nil {
		return nil, fmt.Errorf("outboxfx: %w", err)
	}
	return relay, nil
}
