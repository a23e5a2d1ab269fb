// Package tracing carries OpenTelemetry traces through the outbox, from the request that wrote
// an event to the consumer that receives it.
//
// Two halves work together. WriteHook, installed in a store's Config.WriteHooks, copies the trace
// context of the writer's ctx (W3C traceparent and tracestate by default) into the message's
// Headers, so it is stored with the event. The middleware then starts one producer span per
// message, as a child of that stored context, and writes the span's own context back into the
// headers the transport sends, so a consumer continues the same trace.
//
// Why a span per message rather than one per batch: the messages of one batch were written by
// different requests, so they belong to different traces. A batch span could only link to them;
// a span per message makes the publish a real child of the request that wrote it, which is what
// a trace view needs to show the request and its event together.
package tracing

import (
	"context"
	"errors"
	"maps"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the spans this package starts.
const ScopeName = "github.com/txoutbox/outbox/middleware/tracing"

// Config tunes tracing. The zero value of every field means its documented default.
type Config struct {
	// TracerProvider starts the publish spans. Default otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// Propagator writes trace context into headers and reads it back. Writer and relay must
	// agree on it. Default propagation.TraceContext{} (W3C traceparent and tracestate).
	Propagator propagation.TextMapPropagator
	// Transport, when it is a Describer (every transport of this repository is), names each
	// span's messaging.system and messaging.destination.name and the span itself
	// ("publish orders.fifo"). Default none: spans are named after the message type.
	Transport outbox.Transport
	// System is the messaging.system attribute of publish spans, e.g. "aws_sqs". Default: the
	// Transport's, or none.
	System string
}

// Describer is what a transport tells the tracing middleware about where a message goes, in
// OpenTelemetry's messaging terms: the messaging.system it is ("aws_sqs", "kafka", "nats",
// "rabbitmq") and the destination of one message (its queue, topic, subject or exchange).
// Destination returns "" when it cannot tell (a route the message does not match).
type Describer interface {
	MessagingSystem() string
	Destination(m *outbox.Message) string
}

func (c Config) withDefaults() Config {
	if d, ok := c.Transport.(Describer); ok && c.System == "" {
		c.System = d.MessagingSystem()
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.Propagator == nil {
		c.Propagator = propagation.TraceContext{}
	}
	return c
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	if len(c.System) > 64 {
		return &outbox.ConfigError{Component: "tracing", Field: "System", Problem: "is longer than 64 bytes"}
	}
	return nil
}

// WriteHook returns the hook that stores the writer's trace context in each message's headers.
func (c Config) WriteHook() backend.WriteHook {
	return WriteHook(c.withDefaults().Propagator)
}

// WriteHook returns a backend.WriteHook that injects the trace context of the writer's ctx into the
// message's Headers with p (propagation.TraceContext{} when nil). A ctx without a span adds no
// header.
func WriteHook(p propagation.TextMapPropagator) backend.WriteHook {
	if p == nil {
		p = propagation.TraceContext{}
	}
	return func(ctx context.Context, m *outbox.Message) {
		p.Inject(ctx, &headers{m: m})
	}
}

// Middleware returns the tracing middleware, or the error Validate reports.
func (c Config) Middleware() (outbox.Middleware, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	tracer := c.TracerProvider.Tracer(ScopeName)
	return func(next outbox.Handler) outbox.Handler {
		return func(ctx context.Context, msgs []*outbox.Message) error {
			return c.publish(ctx, tracer, next, msgs)
		}
	}, nil
}

func (c Config) publish(ctx context.Context, tracer trace.Tracer, next outbox.Handler, msgs []*outbox.Message) error {
	spans := make([]trace.Span, len(msgs))
	out := make([]*outbox.Message, len(msgs))
	for i, m := range msgs {
		parent := c.Propagator.Extract(ctx, &headers{m: m})
		destination := c.destination(m)
		name := "publish " + m.Type // semconv's "{operation} {destination}", or the type without one
		if destination != "" {
			name = "publish " + destination
		}
		spanCtx, span := tracer.Start(parent, name, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(c.attributes(m, destination)...))
		spans[i] = span
		// The transport gets a copy whose headers name the publish span; the claimed message,
		// which may be retried, keeps the writer's context.
		cp := *m
		cp.Headers = maps.Clone(m.Headers)
		c.Propagator.Inject(spanCtx, &headers{m: &cp})
		out[i] = &cp
	}

	err := next(ctx, out)

	var be *outbox.BatchError
	partial := errors.As(err, &be)
	for i, span := range spans {
		cause := err
		if partial {
			cause = be.Failed[msgs[i].ID]
		}
		if cause != nil {
			span.RecordError(cause)
			span.SetStatus(codes.Error, cause.Error())
			span.SetAttributes(attribute.Bool("outbox.permanent", outbox.IsPermanent(cause)))
		}
		span.End()
	}
	return err
}

// destination is the Transport's name for where m goes, or "".
func (c Config) destination(m *outbox.Message) string {
	if d, ok := c.Transport.(Describer); ok {
		return d.Destination(m)
	}
	return ""
}

func (c Config) attributes(m *outbox.Message, destination string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("publish"),
		semconv.MessagingMessageID(m.ID),
		attribute.String("outbox.message.type", m.Type),
		attribute.Int("outbox.attempt", m.Attempts+1),
	}
	if m.Key != "" {
		attrs = append(attrs, attribute.String("outbox.message.key", m.Key))
	}
	if c.System != "" {
		attrs = append(attrs, semconv.MessagingSystemKey.String(c.System))
	}
	if destination != "" {
		attrs = append(attrs, semconv.MessagingDestinationName(destination))
	}
	return attrs
}

// headers adapts a message's Headers to propagation.TextMapCarrier, creating the map only when
// something is written to it.
type headers struct{ m *outbox.Message }

func (h *headers) Get(key string) string { return h.m.Headers[key] }

// Set adds a header unless the message already holds outbox.MaxHeaders: trace context is worth
// losing, a write failing because of it is not.
func (h *headers) Set(key, value string) {
	if h.m.Headers == nil {
		h.m.Headers = make(map[string]string, 2)
	}
	if _, ok := h.m.Headers[key]; !ok && len(h.m.Headers) >= outbox.MaxHeaders {
		return
	}
	h.m.Headers[key] = value
}

func (h *headers) Keys() []string {
	keys := make([]string, 0, len(h.m.Headers))
	for k := range h.m.Headers {
		keys = append(keys, k)
	}
	return keys
}
