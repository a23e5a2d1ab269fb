// Package middleware is the root of the publish-path middleware for the outbox relay. Each
// concern lives in its own package, each with a Config whose Middleware method builds a
// outbox.Middleware:
//
//   - retry: retries transient publish failures in process before the relay records them.
//   - dedup: skips messages already published recently, so a lost ack causes no duplicate.
//   - tracing: continues the writer's OpenTelemetry trace in a publish span per message.
//   - logging: zap lines for batches, failures and dead letters.
//   - metrics: OpenTelemetry counters, histograms and backlog gauges.
//
// The relay runs outbox.Config.Middleware with the first entry outermost. A sensible order is
//
//	logging, metrics, dedup, tracing, retry
//
// so logging and metrics see the final outcome of each batch, dedup records only what was
// finally published, each publish span covers its retries, and retry sits next to the transport.
package middleware
