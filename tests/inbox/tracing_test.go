package inbox

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/middleware/tracing"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/transport/sqs"
)

// traced continues the trace a message carries in its headers (W3C traceparent, as the tracing
// middleware writes them and the SQS consumer hands them over) with a consumer span around
// next: the few lines docs/inbox.md shows, since the consumers themselves stay free of
// OpenTelemetry.
func traced(tp trace.TracerProvider, next func(context.Context, *outbox.Message) error) func(context.Context, *outbox.Message) error {
	tracer := tp.Tracer("consumer")
	return func(ctx context.Context, m *outbox.Message) error {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(m.Headers))
		ctx, span := tracer.Start(ctx, "process "+m.Type, trace.WithSpanKind(trace.SpanKindConsumer))
		defer span.End()
		err := next(ctx, m)
		if err != nil {
			span.RecordError(err)
		}
		return err
	}
}

// TestTraceContinues: the request that wrote an event, the relay's publish span and the
// consumer's processing span form one trace, across PostgreSQL, the relay and SQS.
func TestTraceContinues(t *testing.T) {
	b := postgresBackend(t)
	ctx := testCtx(t)
	url, _ := newQueue(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tc := tracing.Config{TracerProvider: tp, System: "aws_sqs"}

	// The writer's store copies the request's trace context into the event's headers.
	pg := b.store.(*postgres.Store)
	hooked, err := postgres.New(ctx, postgres.Config{Pool: pg.Pool(), Schema: b.schema, WriteHooks: []backend.WriteHook{tc.WriteHook()}})
	if err != nil {
		t.Fatal(err)
	}
	defer hooked.Close()
	reqCtx, req := tp.Tracer("service").Start(ctx, "POST /orders")
	m, err := outbox.NewMessage("ORDER_PLACED", map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Execute(reqCtx, hooked, func(context.Context, pgx.Tx) (struct{}, error) { return struct{}{}, nil }, m); err != nil {
		t.Fatal(err)
	}
	req.End()

	mw, err := tc.Middleware()
	if err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.NewRelay(hooked, transport(t, url), outbox.Config{PollInterval: 50 * time.Millisecond, Middleware: []outbox.Middleware{mw}})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = relay.Stop(context.Background()) }()

	var done atomic.Bool
	cfg := consumerConfig(url)
	cfg.Handler = traced(tp, func(ctx context.Context, m *outbox.Message) error {
		_, err := b.consumer.handle(ctx, "billing", m, func(context.Context) error { return nil })
		done.Store(err == nil)
		return err
	})
	c, err := sqs.NewConsumer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Stop(context.Background()) }()
	waitFor(t, 20*time.Second, "the event to be processed", done.Load)
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	request, publish, process := spans["POST /orders"], spans["publish ORDER_PLACED"], spans["process ORDER_PLACED"]
	if request == nil || publish == nil || process == nil {
		t.Fatalf("spans ended: %v", spans)
	}
	if publish.Parent().SpanID() != request.SpanContext().SpanID() || process.Parent().SpanID() != publish.SpanContext().SpanID() {
		t.Fatalf("not one chain: request %v, publish %v (parent %v), process %v (parent %v)",
			request.SpanContext().SpanID(), publish.SpanContext().SpanID(), publish.Parent().SpanID(),
			process.SpanContext().SpanID(), process.Parent().SpanID())
	}
	if process.SpanContext().TraceID() != request.SpanContext().TraceID() || process.SpanKind() != trace.SpanKindConsumer {
		t.Fatalf("the consumer span is not in the request's trace")
	}
}
