package pgbench

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/transport/memory"
)

// LatencyOptions tunes Latency.
type LatencyOptions struct {
	// Rate of events per second, one event per transaction. Default 2000.
	Rate int
	// Duration of the steady load. Default 10s.
	Duration time.Duration
	// Clients write concurrently to keep up with Rate. Default 16.
	Clients int
	// PollOnly hides the store's Notifier from the relay, so only polling finds messages.
	PollOnly bool
	// Ordered runs the relay in ordered mode; events then take turns over Keys keys.
	Ordered bool
	// Keys of the events when Ordered. Default 100.
	Keys int
	// PollInterval of the relay. Default the relay's default (1s).
	PollInterval time.Duration
	// NotifyInterval of the store (see postgres.Config). Default the store's default.
	NotifyInterval time.Duration
	// Schema to work in. Default: a fresh random one, dropped afterwards.
	Schema string
}

// LatencyResult reports end-to-end latency, from the write (just before Add) to the
// subscriber of the memory transport receiving the message. The baseline is the latency of the
// write transaction itself (Add and COMMIT), measured in the same run.
type LatencyResult struct {
	Rate        int     `json:"rate_per_sec"`
	Seconds     float64 `json:"seconds"`
	Events      int     `json:"events"`
	AchievedPS  float64 `json:"achieved_events_per_sec"`
	PollOnly    bool    `json:"poll_only"`
	Ordered     bool    `json:"ordered"`
	Keys        int     `json:"keys,omitempty"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	CommitP50Ms float64 `json:"commit_p50_ms"`
	CommitP99Ms float64 `json:"commit_p99_ms"`
	// Ratio is P50Ms / CommitP50Ms: how many write transactions' worth of time delivery takes.
	Ratio float64 `json:"ratio"`
}

// storeOnly hides every optional capability of a store, the Notifier in particular.
type storeOnly struct{ outbox.Store }

// Latency writes events at a steady rate while a relay delivers them, and reports percentiles.
func Latency(ctx context.Context, pool *pgxpool.Pool, o LatencyOptions) (LatencyResult, error) {
	if o.Rate <= 0 {
		o.Rate = 2000
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Clients <= 0 {
		o.Clients = 16
	}
	sb, err := newSandbox(ctx, pool, o.Schema, func(c *postgres.Config) { c.NotifyInterval = o.NotifyInterval })
	if err != nil {
		return LatencyResult{}, err
	}
	defer sb.drop()

	total := int(float64(o.Rate) * o.Duration.Seconds())
	var deliveries benchutil.Deliveries
	transport := memory.New()
	transport.Subscribe(deliveries.Record)
	var store outbox.Store = sb.store
	if o.PollOnly {
		store = storeOnly{sb.store}
	}
	if o.Ordered && o.Keys <= 0 {
		o.Keys = 100
	}
	relay, err := outbox.NewRelay(store, transport, outbox.Config{PollInterval: o.PollInterval, Unordered: !o.Ordered})
	if err != nil {
		return LatencyResult{}, err
	}
	if err := relay.Start(ctx); err != nil {
		return LatencyResult{}, err
	}
	defer func() { _ = relay.Stop(context.Background()) }()

	var written atomic.Int64
	commits, elapsed, err := benchutil.SteadyWrites(ctx, o.Clients, o.Rate, total, func(ctx context.Context, sent time.Time) error {
		m := &outbox.Message{Type: "ORDER_CREATED", Payload: samplePayload,
			Headers: map[string]string{benchutil.SentHeader: strconv.FormatInt(sent.UnixNano(), 10)}}
		if o.Ordered {
			m.Key = "order-" + strconv.FormatInt(written.Add(1)%int64(o.Keys), 10)
		}
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return sb.store.Add(ctx, tx, m) })
	})
	if err != nil {
		return LatencyResult{}, fmt.Errorf("pgbench: latency: write: %w", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := transport.WaitFor(waitCtx, total); err != nil {
		return LatencyResult{}, fmt.Errorf("pgbench: latency: %d of %d delivered: %w", transport.Len(), total, err)
	}

	lat := deliveries.Latencies()
	r := LatencyResult{
		Rate: o.Rate, Seconds: elapsed.Seconds(), Events: total, AchievedPS: float64(total) / elapsed.Seconds(), PollOnly: o.PollOnly,
		Ordered: o.Ordered, Keys: o.Keys,
		P50Ms: benchutil.Ms(benchutil.Percentile(lat, 0.50)), P99Ms: benchutil.Ms(benchutil.Percentile(lat, 0.99)), MaxMs: benchutil.Ms(benchutil.Percentile(lat, 1)),
		CommitP50Ms: benchutil.Ms(benchutil.Percentile(commits, 0.50)), CommitP99Ms: benchutil.Ms(benchutil.Percentile(commits, 0.99)),
	}
	r.Ratio = ratio(r.P50Ms, r.CommitP50Ms)
	return r, nil
}
