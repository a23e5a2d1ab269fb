package metrics_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txoutbox/outbox/backend"
	memstore "github.com/txoutbox/outbox/store/memory"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/middleware/metrics"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/memory"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newProvider(t *testing.T) (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return mp, reader
}

func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// sumByType returns a counter's value for each message type.
func sumByType(t *testing.T, data metricdata.Aggregation) map[string]int64 {
	t.Helper()
	sum, ok := data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("data %T, want an int64 sum", data)
	}
	out := map[string]int64{}
	for _, dp := range sum.DataPoints {
		typ, _ := dp.Attributes.Value(attribute.Key("outbox.message.type"))
		out[typ.AsString()] += dp.Value
	}
	return out
}

func TestCountersAndHistograms(t *testing.T) {
	mp, reader := newProvider(t)
	mw, err := metrics.Config{MeterProvider: mp}.Middleware()
	if err != nil {
		t.Fatal(err)
	}
	orders := outboxtest.NewMessages(3, "ORDER_PLACED", "")
	refunds := outboxtest.NewMessages(2, "REFUND_ISSUED", "")
	msgs := append(orders, refunds...)
	// Written two seconds ago, so the lag of what is published is at least that.
	written := time.Now().Add(-2 * time.Second)
	if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{Now: written}); err != nil {
		t.Fatal(err)
	}
	broker := memory.New()
	broker.FailIDs(errors.New("throttled"), orders[1].ID)
	broker.FailIDs(outbox.Permanent(errors.New("too large")), orders[2].ID)
	refunds[1].Attempts = 2 // its third and last attempt
	broker.FailIDs(errors.New("throttled"), refunds[1].ID)

	if err := outbox.Chain(broker.Publish, mw)(backend.WithMaxAttempts(context.Background(), 3), msgs); err == nil {
		t.Fatal("want the transport's BatchError")
	}

	got := collect(t, reader)
	for name, want := range map[string]map[string]int64{
		"outbox.relay.published": {"ORDER_PLACED": 1, "REFUND_ISSUED": 1},
		"outbox.relay.failed":    {"ORDER_PLACED": 1},
		"outbox.relay.dead":      {"ORDER_PLACED": 1, "REFUND_ISSUED": 1},
	} {
		if got[name] == nil {
			t.Errorf("%s not recorded", name)
			continue
		}
		if have := sumByType(t, got[name]); len(have) != len(want) || have["ORDER_PLACED"] != want["ORDER_PLACED"] || have["REFUND_ISSUED"] != want["REFUND_ISSUED"] {
			t.Errorf("%s = %v, want %v", name, have, want)
		}
	}

	dur, ok := got["outbox.relay.publish.duration"].(metricdata.Histogram[float64])
	if !ok || len(dur.DataPoints) != 1 || dur.DataPoints[0].Count != 1 {
		t.Fatalf("publish duration = %+v, want one batch recorded", got["outbox.relay.publish.duration"])
	}
	if outcome, _ := dur.DataPoints[0].Attributes.Value("outcome"); outcome.AsString() != "partial" {
		t.Errorf("outcome = %q, want partial", outcome.AsString())
	}

	lag, ok := got["outbox.relay.lag"].(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("lag = %T", got["outbox.relay.lag"])
	}
	var n uint64
	for _, dp := range lag.DataPoints {
		n += dp.Count
		if lo, ok := dp.Min.Value(); !ok || lo < 2 {
			t.Errorf("lag min = %v, want at least the 2s since the write", lo)
		}
	}
	if n != 2 {
		t.Errorf("lag recorded for %d messages, want the 2 published", n)
	}
}

func TestObserveStore(t *testing.T) {
	ctx := context.Background()
	mp, reader := newProvider(t)
	store := memstore.New()
	msgs := outboxtest.NewMessages(3, "ORDER_PLACED", "")
	msgs[0].CreatedAt = time.Now().Add(-time.Minute)
	if err := store.Add(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	claimed, err := store.Claim(ctx, outbox.ClaimRequest{Token: "o", Limit: 1, Lease: time.Minute})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v, %v", claimed, err)
	}
	if _, err := store.Nack(ctx, "o", []outbox.Failure{{ID: claimed[0].ID, Error: "poison", Dead: true}}); err != nil {
		t.Fatal(err)
	}

	reg, err := metrics.Config{MeterProvider: mp}.ObserveStore(store)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, reader)
	gauge := func(name string) int64 {
		g, ok := got[name].(metricdata.Gauge[int64])
		if !ok || len(g.DataPoints) != 1 {
			t.Fatalf("%s = %+v, want one int64 gauge point", name, got[name])
		}
		return g.DataPoints[0].Value
	}
	if v := gauge("outbox.backlog"); v != 2 {
		t.Errorf("backlog = %d, want 2", v)
	}
	if v := gauge("outbox.dead_letters"); v != 1 {
		t.Errorf("dead letters = %d, want 1", v)
	}
	age, ok := got["outbox.oldest_pending.age"].(metricdata.Gauge[float64])
	if !ok || len(age.DataPoints) != 1 || age.DataPoints[0].Value < 0 || age.DataPoints[0].Value > 30 {
		t.Errorf("oldest pending age = %+v, want the age of the oldest pending (the minute-old one is dead)", got["outbox.oldest_pending.age"])
	}

	if err := reg.Unregister(); err != nil {
		t.Fatal(err)
	}
	if g, ok := collect(t, reader)["outbox.backlog"].(metricdata.Gauge[int64]); ok && len(g.DataPoints) > 0 {
		t.Errorf("backlog still observed after Unregister: %+v", g)
	}
}

func TestObserveStoreNeedsAnInspector(t *testing.T) {
	mp, _ := newProvider(t)
	var plain outbox.Store = struct{ outbox.Store }{memstore.New()}
	if _, err := (metrics.Config{MeterProvider: mp}).ObserveStore(plain); err == nil {
		t.Fatal("want an error: the store cannot report its backlog")
	}
}
