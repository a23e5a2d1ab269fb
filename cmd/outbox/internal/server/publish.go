package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/txoutbox/outbox"
)

// NewPublishDuration returns the histogram of outbox_relay_publish_duration_seconds, the time
// one batch's publish took, and the middleware that observes it. The OpenTelemetry middleware
// (middleware/metrics) records the same as outbox.relay.publish.duration, with the same buckets.
func NewPublishDuration() (prometheus.Histogram, outbox.Middleware) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "outbox_relay_publish_duration_seconds",
		Help:    "Time to publish one batch, successful or not.",
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
	})
	mw := func(next outbox.Handler) outbox.Handler {
		return func(ctx context.Context, msgs []*outbox.Message) error {
			start := time.Now()
			err := next(ctx, msgs)
			h.Observe(time.Since(start).Seconds())
			return err
		}
	}
	return h, mw
}
