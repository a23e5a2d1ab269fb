package tracing_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox/backend"
	memstore "github.com/txoutbox/outbox/store/memory"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/middleware/tracing"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/memory"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newProvider(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

func publishSpans(exp *tracetest.InMemoryExporter) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.InstrumentationScope.Name == tracing.ScopeName {
			out = append(out, s)
		}
	}
	return out
}

// TestTraceFlowsFromWriterToBroker follows one event from an HTTP handler's span, through a
// store and a relay, to the broker.
func TestTraceFlowsFromWriterToBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tp, exp := newProvider(t)
	cfg := tracing.Config{TracerProvider: tp, System: "memory"}

	store := memstore.New()
	store.WriteHooks = []backend.WriteHook{cfg.WriteHook()}
	reqCtx, request := tp.Tracer("service").Start(ctx, "POST /orders")
	msg := outboxtest.NewMessages(1, "ORDER_PLACED", "order-7")[0]
	if err := store.Add(reqCtx, msg); err != nil {
		t.Fatal(err)
	}
	request.End()
	writer := request.SpanContext()

	mw, err := cfg.Middleware()
	if err != nil {
		t.Fatal(err)
	}
	broker := memory.New()
	relay, err := outbox.NewRelay(store, broker, outbox.Config{Middleware: []outbox.Middleware{mw}, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitErr := broker.WaitFor(ctx, 1)
	if err := relay.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if waitErr != nil {
		t.Fatal(waitErr)
	}

	spans := publishSpans(exp)
	if len(spans) != 1 {
		t.Fatalf("%d publish spans, want 1", len(spans))
	}
	span := spans[0]
	if span.Parent.TraceID() != writer.TraceID() || span.Parent.SpanID() != writer.SpanID() {
		t.Fatalf("publish span's parent is %s/%s, want the writer's span %s/%s",
			span.Parent.TraceID(), span.Parent.SpanID(), writer.TraceID(), writer.SpanID())
	}
	if span.SpanKind != trace.SpanKindProducer || span.Name != "publish ORDER_PLACED" {
		t.Errorf("span %q kind %v, want a producer span named after the type", span.Name, span.SpanKind)
	}
	attrs := attribute.NewSet(span.Attributes...)
	if v, _ := attrs.Value("messaging.message.id"); v.AsString() != msg.ID {
		t.Errorf("messaging.message.id = %q, want %s", v.AsString(), msg.ID)
	}
	if v, _ := attrs.Value("outbox.message.key"); v.AsString() != "order-7" {
		t.Errorf("outbox.message.key = %q", v.AsString())
	}

	// The broker got the publish span's context, so a consumer continues the same trace.
	got := broker.Received()[0].Headers["traceparent"]
	want := "00-" + writer.TraceID().String() + "-" + span.SpanContext.SpanID().String() + "-01"
	if got != want {
		t.Errorf("published traceparent = %q, want %q (writer's trace, publish span)", got, want)
	}
}

// A transport that describes itself names the spans after the destination and sets
// messaging.system and messaging.destination.name (OpenTelemetry's messaging conventions).
func TestSpansNameTheTransportsDestination(t *testing.T) {
	tp, exp := newProvider(t)
	broker := memory.New()
	mw, err := tracing.Config{TracerProvider: tp, Transport: broker}.Middleware()
	if err != nil {
		t.Fatal(err)
	}
	msgs := outboxtest.NewMessages(1, "ORDER_PLACED", "")
	if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Chain(broker.Publish, mw)(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	spans := publishSpans(exp)
	if len(spans) != 1 || spans[0].Name != "publish memory" {
		t.Fatalf("spans %+v, want one named publish memory", spans)
	}
	set := attribute.NewSet(spans[0].Attributes...)
	system, _ := set.Value("messaging.system")
	dest, _ := set.Value("messaging.destination.name")
	if system.AsString() != "memory" || dest.AsString() != "memory" {
		t.Errorf("messaging.system %q, messaging.destination.name %q; want memory, memory", system.AsString(), dest.AsString())
	}
}

func TestFailedMessagesMarkTheirSpan(t *testing.T) {
	tp, exp := newProvider(t)
	mw, err := tracing.Config{TracerProvider: tp}.Middleware()
	if err != nil {
		t.Fatal(err)
	}
	msgs := outboxtest.NewMessages(2, "ORDER_PLACED", "")
	if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	broker := memory.New()
	broker.FailIDs(outbox.Permanent(errors.New("too large")), msgs[1].ID)

	err = outbox.Chain(broker.Publish, mw)(context.Background(), msgs)
	var be *outbox.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want the transport's BatchError passed through", err)
	}
	status := map[string]codes.Code{}
	spanIDs := map[string]string{}
	for _, s := range publishSpans(exp) {
		set := attribute.NewSet(s.Attributes...)
		v, _ := set.Value("messaging.message.id")
		status[v.AsString()] = s.Status.Code
		spanIDs[v.AsString()] = s.SpanContext.SpanID().String()
	}
	// Written without a trace, the message still carries its publish span's context.
	if tp := broker.Received()[0].Headers["traceparent"]; !strings.Contains(tp, spanIDs[msgs[0].ID]) {
		t.Errorf("published traceparent %q does not name the publish span %s", tp, spanIDs[msgs[0].ID])
	}
	if status[msgs[0].ID] != codes.Unset || status[msgs[1].ID] != codes.Error {
		t.Errorf("span status by id = %v, want only %s in error", status, msgs[1].ID)
	}
	if msgs[0].Headers != nil {
		t.Errorf("the claimed message was modified: %v; only the copy sent should carry the publish span", msgs[0].Headers)
	}
}

func TestWriteHook(t *testing.T) {
	tp, _ := newProvider(t)
	hook := tracing.WriteHook(nil)

	untraced := &outbox.Message{Type: "T"}
	hook(context.Background(), untraced)
	if untraced.Headers != nil {
		t.Errorf("a writer without a span added headers %v", untraced.Headers)
	}

	ctx, span := tp.Tracer("t").Start(context.Background(), "write")
	defer span.End()
	traced := &outbox.Message{Type: "T", Headers: map[string]string{"content-type": "application/json"}}
	tracing.WriteHook(propagation.TraceContext{})(ctx, traced)
	if !strings.Contains(traced.Headers["traceparent"], span.SpanContext().TraceID().String()) || traced.Headers["content-type"] == "" {
		t.Errorf("headers = %v, want the writer's traceparent added to the existing headers", traced.Headers)
	}
}

func TestWriteHookNeverFailsAFullMessage(t *testing.T) {
	tp, _ := newProvider(t)
	ctx, span := tp.Tracer("t").Start(context.Background(), "write")
	defer span.End()
	m := outboxtest.NewMessages(1, "T", "")[0]
	m.Headers = map[string]string{}
	for i := range outbox.MaxHeaders {
		m.Headers[fmt.Sprintf("h%d", i)] = "v"
	}
	opts := backend.WriteOptions{Hooks: []backend.WriteHook{tracing.WriteHook(nil)}}
	if err := backend.Prepare(ctx, []*outbox.Message{m}, opts); err != nil {
		t.Fatalf("a message already at the header limit failed to write: %v", err)
	}
	if _, ok := m.Headers["traceparent"]; ok || len(m.Headers) != outbox.MaxHeaders {
		t.Errorf("headers grew to %d; the trace context should have been dropped", len(m.Headers))
	}
}

func TestValidate(t *testing.T) {
	_, err := tracing.Config{System: strings.Repeat("x", 65)}.Middleware()
	var ce *outbox.ConfigError
	if !errors.As(err, &ce) || ce.Field != "System" || ce.Component != "tracing" {
		t.Fatalf("err = %v, want a tracing ConfigError naming System", err)
	}
	if _, err := (tracing.Config{}).Middleware(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}
