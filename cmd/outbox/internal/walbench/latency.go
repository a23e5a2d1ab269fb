package walbench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/transport/memory"
)

// LatencyOptions tunes Latency.
type LatencyOptions struct {
	// Rate of events per second, one event per transaction. Default 2000.
	Rate int
	// Duration of the steady load of each mode. Default 10s.
	Duration time.Duration
	// Clients write concurrently to keep up with Rate. Default 16.
	Clients int
	// Rounds alternate the modes this many times, each round a load of Duration in each, so
	// load from other processes hits both alike; the percentiles are over every round's
	// events. Default 2.
	Rounds int
}

// LatencyResult reports end-to-end latency in each mode, from the write (just before Add) to
// the memory transport's subscriber receiving the message, beside the latency of the write
// transaction itself (Add and COMMIT) measured in the same load.
type LatencyResult struct {
	Rate   int         `json:"rate_per_sec"`
	Rounds int         `json:"rounds"`
	WAL    ModeLatency `json:"wal"`
	Table  ModeLatency `json:"table"`
}

// ModeLatency is the latency of one mode.
type ModeLatency struct {
	Seconds     float64 `json:"seconds"`
	Events      int     `json:"events"`
	AchievedPS  float64 `json:"achieved_events_per_sec"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	CommitP50Ms float64 `json:"commit_p50_ms"`
	CommitP99Ms float64 `json:"commit_p99_ms"`
	// BeyondCommitP99Ms is P99Ms - CommitP99Ms: what delivery adds to the commit's own time.
	BeyondCommitP99Ms float64 `json:"beyond_commit_p99_ms"`
}

// Latency writes events at a steady rate while a relay delivers them, in table mode and in
// WAL mode by turns, each round on a schema of its own.
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
	if o.Rounds <= 0 {
		o.Rounds = 2
	}
	if err := NeedLogical(ctx, pool); err != nil {
		return LatencyResult{}, err
	}
	r := LatencyResult{Rate: o.Rate, Rounds: o.Rounds}
	var table, wal samples
	for range o.Rounds {
		for _, m := range []struct {
			wal bool
			all *samples
		}{{false, &table}, {true, &wal}} {
			s, err := latency(ctx, pool, o, m.wal)
			if err != nil {
				return r, err
			}
			m.all.add(s)
		}
	}
	r.Table, r.WAL = table.result(), wal.result()
	return r, nil
}

// samples are one mode's measurements.
type samples struct {
	latencies, commits []time.Duration
	events             int
	elapsed            time.Duration
}

func (s *samples) add(o samples) {
	s.latencies = append(s.latencies, o.latencies...)
	s.commits = append(s.commits, o.commits...)
	s.events += o.events
	s.elapsed += o.elapsed
}

func (s *samples) result() ModeLatency {
	m := ModeLatency{
		Seconds: s.elapsed.Seconds(), Events: s.events, AchievedPS: float64(s.events) / s.elapsed.Seconds(),
		P50Ms: benchutil.Ms(benchutil.Percentile(s.latencies, 0.50)), P99Ms: benchutil.Ms(benchutil.Percentile(s.latencies, 0.99)), MaxMs: benchutil.Ms(benchutil.Percentile(s.latencies, 1)),
		CommitP50Ms: benchutil.Ms(benchutil.Percentile(s.commits, 0.50)), CommitP99Ms: benchutil.Ms(benchutil.Percentile(s.commits, 0.99)),
	}
	m.BeyondCommitP99Ms = m.P99Ms - m.CommitP99Ms
	return m
}

func latency(ctx context.Context, pool *pgxpool.Pool, o LatencyOptions, wal bool) (samples, error) {
	sb, err := newSandbox(ctx, pool, wal)
	if err != nil {
		return samples{}, err
	}
	defer sb.drop()
	total := int(float64(o.Rate) * o.Duration.Seconds())
	var deliveries benchutil.Deliveries
	transport := memory.New()
	transport.Subscribe(deliveries.Record)
	relay, err := outbox.NewRelay(sb.store, transport, outbox.Config{})
	if err != nil {
		return samples{}, err
	}
	if err := relay.Start(ctx); err != nil {
		return samples{}, err
	}
	defer func() { _ = relay.Stop(context.Background()) }()
	if err := sb.store.Sync(ctx); err != nil { // WAL mode: the reader holds the slot before the load
		return samples{}, err
	}

	commits, elapsed, err := benchutil.SteadyWrites(ctx, o.Clients, o.Rate, total, func(ctx context.Context, sent time.Time) error {
		m := &outbox.Message{Type: "ORDER_CREATED", Payload: samplePayload,
			Headers: map[string]string{benchutil.SentHeader: strconv.FormatInt(sent.UnixNano(), 10)}}
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return sb.store.Add(ctx, tx, m) })
	})
	if err != nil {
		return samples{}, fmt.Errorf("walbench: latency: write: %w", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := transport.WaitFor(waitCtx, total); err != nil {
		return samples{}, fmt.Errorf("walbench: latency: %d of %d delivered: %w", transport.Len(), total, err)
	}
	return samples{latencies: deliveries.Latencies(), commits: commits, events: total, elapsed: elapsed}, nil
}
