// Package metrics records the publish path with OpenTelemetry metrics: how many messages were
// published, failed and dead-lettered (by type), how long publishing takes, and how long events
// waited in the outbox. ObserveStore adds gauges of the backlog read from the store itself.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ScopeName is the instrumentation scope of the instruments this package creates.
const ScopeName = "github.com/txoutbox/outbox/middleware/metrics"

// secondsBuckets spans a fast publish (1ms) to an outage-long lag (1h). The SDK's default
// boundaries are meant for milliseconds and would put every publish in the first bucket.
var secondsBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// Config tunes the metrics. The zero value of every field means its documented default.
type Config struct {
	// MeterProvider creates the instruments. Default otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

func (c Config) withDefaults() Config {
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	return c
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	return nil
}

// instruments are the synchronous instruments of the middleware.
type instruments struct {
	published, failed, dead metric.Int64Counter
	duration, lag           metric.Float64Histogram

	// byType caches the attribute option of each message type: building it per message costs
	// more than the measurement itself. At most maxCachedTypes are kept.
	byType     sync.Map // string -> metric.MeasurementOption
	cachedSize atomic.Int64
}

const maxCachedTypes = 1024

var outcomes = map[string]metric.MeasurementOption{
	"ok":      metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", "ok"))),
	"partial": metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", "partial"))),
	"error":   metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", "error"))),
}

func (ins *instruments) typeOption(typ string) metric.MeasurementOption {
	if opt, ok := ins.byType.Load(typ); ok {
		return opt.(metric.MeasurementOption)
	}
	opt := metric.WithAttributeSet(attribute.NewSet(attribute.String("outbox.message.type", typ)))
	if ins.cachedSize.Load() < maxCachedTypes {
		if _, loaded := ins.byType.LoadOrStore(typ, opt); !loaded {
			ins.cachedSize.Add(1)
		}
	}
	return opt
}

// Middleware returns the metrics middleware, or an error when cfg is invalid or an instrument
// cannot be created.
//
// Instruments: outbox.relay.published, outbox.relay.failed (will be retried) and
// outbox.relay.dead, counters with attribute outbox.message.type; outbox.relay.publish.duration,
// a histogram of each batch's publish time with attribute outcome (ok, partial, error); and
// outbox.relay.lag, a histogram of each published message's time from creation to publish, by
// type. A Prometheus exporter names them as the outbox daemon does (outbox_relay_published_total,
// outbox_relay_publish_duration_seconds), so one dashboard serves both.
func (c Config) Middleware() (outbox.Middleware, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	m := c.MeterProvider.Meter(ScopeName)
	ins := &instruments{}
	var err, e error
	ins.published, e = m.Int64Counter("outbox.relay.published", metric.WithUnit("{message}"),
		metric.WithDescription("Messages the transport accepted."))
	err = errors.Join(err, e)
	ins.failed, e = m.Int64Counter("outbox.relay.failed", metric.WithUnit("{message}"),
		metric.WithDescription("Failed publishes that will be retried."))
	err = errors.Join(err, e)
	ins.dead, e = m.Int64Counter("outbox.relay.dead", metric.WithUnit("{message}"),
		metric.WithDescription("Failed publishes that move their message to dead: permanent errors and last attempts."))
	err = errors.Join(err, e)
	ins.duration, e = m.Float64Histogram("outbox.relay.publish.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to publish one batch."), metric.WithExplicitBucketBoundaries(secondsBuckets...))
	err = errors.Join(err, e)
	ins.lag, e = m.Float64Histogram("outbox.relay.lag", metric.WithUnit("s"),
		metric.WithDescription("Time from a message's creation to its publish."), metric.WithExplicitBucketBoundaries(secondsBuckets...))
	err = errors.Join(err, e)
	if err != nil {
		return nil, fmt.Errorf("metrics: instruments: %w", err)
	}
	return func(next outbox.Handler) outbox.Handler {
		return func(ctx context.Context, msgs []*outbox.Message) error {
			start := time.Now()
			err := next(ctx, msgs)
			c.record(ctx, ins, msgs, err, start)
			return err
		}
	}, nil
}

func (c Config) record(ctx context.Context, ins *instruments, msgs []*outbox.Message, err error, start time.Time) {
	now := time.Now()
	var be *outbox.BatchError
	partial := errors.As(err, &be)
	outcome := "ok"
	switch {
	case partial:
		outcome = "partial"
	case err != nil:
		outcome = "error"
	}
	ins.duration.Record(ctx, now.Sub(start).Seconds(), outcomes[outcome])

	// Add once per type rather than once per message: a batch usually holds few types.
	type tally struct{ published, failed, dead int64 }
	byType := map[string]*tally{}
	for _, m := range msgs {
		t := byType[m.Type]
		if t == nil {
			t = &tally{}
			byType[m.Type] = t
		}
		cause := err
		if partial {
			cause = be.Failed[m.ID]
		}
		switch {
		case cause == nil:
			t.published++
			if !m.CreatedAt.IsZero() {
				ins.lag.Record(ctx, now.Sub(m.CreatedAt).Seconds(), ins.typeOption(m.Type))
			}
		case backend.FailureIsFinal(ctx, m, cause):
			t.dead++
		default:
			t.failed++
		}
	}
	for typ, t := range byType {
		attrs := ins.typeOption(typ)
		if t.published > 0 {
			ins.published.Add(ctx, t.published, attrs)
		}
		if t.failed > 0 {
			ins.failed.Add(ctx, t.failed, attrs)
		}
		if t.dead > 0 {
			ins.dead.Add(ctx, t.dead, attrs)
		}
	}
}
