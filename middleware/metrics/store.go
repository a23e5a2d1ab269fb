package metrics

import (
	"context"
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
	"go.opentelemetry.io/otel/metric"
)

// ObserveStore registers gauges read from the store's outbox.Inspector at each collection:
// outbox.backlog (pending messages), outbox.dead_letters (dead messages) and
// outbox.oldest_pending.age (seconds since the oldest pending message was written; 0 when none).
// It fails when the store has no Inspector. Unregister the returned registration when the store
// is closed.
//
// Each collection runs one Counts query; on a large PostgreSQL outbox that is a count over the
// pending index, so keep the collection interval in seconds, not milliseconds.
func (c Config) ObserveStore(store outbox.Store) (metric.Registration, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	insp, ok := store.(outbox.Inspector)
	if !ok {
		return nil, fmt.Errorf("metrics: observe store: %T does not implement outbox.Inspector", store)
	}
	c = c.withDefaults()
	m := c.MeterProvider.Meter(ScopeName)
	backlog, err := m.Int64ObservableGauge("outbox.backlog", metric.WithUnit("{message}"),
		metric.WithDescription("Messages waiting to be published."))
	if err != nil {
		return nil, fmt.Errorf("metrics: observe store: %w", err)
	}
	dead, err := m.Int64ObservableGauge("outbox.dead_letters", metric.WithUnit("{message}"),
		metric.WithDescription("Dead messages waiting to be requeued or purged."))
	if err != nil {
		return nil, fmt.Errorf("metrics: observe store: %w", err)
	}
	age, err := m.Float64ObservableGauge("outbox.oldest_pending.age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest message waiting to be published."))
	if err != nil {
		return nil, fmt.Errorf("metrics: observe store: %w", err)
	}
	reg, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		counts, err := insp.Counts(ctx)
		if err != nil {
			return fmt.Errorf("metrics: store counts: %w", err)
		}
		o.ObserveInt64(backlog, counts.Pending)
		o.ObserveInt64(dead, counts.Dead)
		var oldest float64
		if !counts.OldestPending.IsZero() {
			oldest = max(time.Since(counts.OldestPending).Seconds(), 0)
		}
		o.ObserveFloat64(age, oldest)
		return nil
	}, backlog, dead, age)
	if err != nil {
		return nil, fmt.Errorf("metrics: observe store: %w", err)
	}
	return reg, nil
}
