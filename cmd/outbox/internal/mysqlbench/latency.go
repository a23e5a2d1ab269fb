package mysqlbench

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/transport/memory"
)

// Wake-ups of the latency scenario.
const (
	// WakeSignal: writer and relay in one process; the writer calls Notify after its commit
	// (as Execute does) and the store's in-process signal wakes the relay.
	WakeSignal = "signal"
	// WakePoll: the relay sees no Notifier and finds the events at its polls, as it finds the
	// writes of another process (MySQL has no LISTEN/NOTIFY).
	WakePoll = "poll"
)

// LatencyOptions tunes Latency.
type LatencyOptions struct {
	// Rate of events per second, one event per transaction. Default 2000.
	Rate int
	// Duration of each steady load. Default 10s.
	Duration time.Duration
	// Clients write concurrently to keep up with Rate. Default 16.
	Clients int
	// Wakes to measure, each with a relay of its own over the same table, in turn.
	// Default WakeSignal then WakePoll.
	Wakes []string
	// PollInterval of the relay. Default the relay's default (outbox.Config).
	PollInterval time.Duration
	// Ordered runs the relay in ordered mode; events then take turns over Keys keys.
	Ordered bool
	// Keys of the events when Ordered. Default 100.
	Keys int
	// Table to work in. Default: a fresh random one, dropped afterwards.
	Table string
}

// LatencyResult reports end-to-end latency for each wake-up, from the write (just before Add)
// to the subscriber of the memory transport receiving the message. The baseline is the latency
// of the write transaction itself (Add and COMMIT), measured in the same run.
type LatencyResult struct {
	Rate           int          `json:"rate_per_sec"`
	PollIntervalMs float64      `json:"poll_interval_ms"`
	Ordered        bool         `json:"ordered"`
	Keys           int          `json:"keys,omitempty"`
	Runs           []LatencyRun `json:"runs"`
	Server         string       `json:"server"`
}

// LatencyRun is one wake-up's result. TargetP99Ms is the poll interval plus 20 ms.
type LatencyRun struct {
	Wake        string  `json:"wake"`
	Seconds     float64 `json:"seconds"`
	Events      int     `json:"events"`
	AchievedPS  float64 `json:"achieved_events_per_sec"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	CommitP50Ms float64 `json:"commit_p50_ms"`
	CommitP99Ms float64 `json:"commit_p99_ms"`
	// Ratio is P50Ms / CommitP50Ms: how many write transactions' worth of time delivery takes.
	Ratio       float64 `json:"ratio"`
	TargetP99Ms float64 `json:"target_p99_ms"`
	Met         bool    `json:"met"`
}

// storeOnly hides every optional capability of a store, the Notifier in particular.
type storeOnly struct{ outbox.Store }

// Latency writes events at a steady rate while a relay delivers them, once per wake-up, and
// reports percentiles.
func Latency(ctx context.Context, url string, o LatencyOptions) (LatencyResult, error) {
	if o.Rate <= 0 {
		o.Rate = 2000
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Clients <= 0 {
		o.Clients = 16
	}
	if len(o.Wakes) == 0 {
		o.Wakes = []string{WakeSignal, WakePoll}
	}
	if o.Ordered && o.Keys <= 0 {
		o.Keys = 100
	}
	cfg := outbox.Config{PollInterval: o.PollInterval, Unordered: !o.Ordered}
	if o.PollInterval <= 0 {
		cfg.PollInterval = time.Second // outbox.Config's documented default, named for the target
	}
	sb, err := newSandbox(ctx, url, o.Table, o.Clients+4)
	if err != nil {
		return LatencyResult{}, err
	}
	defer sb.drop()
	r := LatencyResult{Rate: o.Rate, PollIntervalMs: benchutil.Ms(cfg.PollInterval), Ordered: o.Ordered, Keys: o.Keys, Server: sb.store.ServerVersion()}
	for _, wake := range o.Wakes {
		if wake != WakeSignal && wake != WakePoll {
			return r, fmt.Errorf("mysqlbench: latency: unknown wake-up %q", wake)
		}
		run, err := sb.latency(ctx, o, cfg, wake)
		if err != nil {
			return r, err
		}
		run.TargetP99Ms = r.PollIntervalMs + 20
		run.Met = run.P99Ms <= run.TargetP99Ms
		r.Runs = append(r.Runs, run)
	}
	return r, nil
}

func (sb *sandbox) latency(ctx context.Context, o LatencyOptions, cfg outbox.Config, wake string) (LatencyRun, error) {
	total := int(float64(o.Rate) * o.Duration.Seconds())
	var deliveries benchutil.Deliveries
	transport := memory.New()
	transport.Subscribe(deliveries.Record)
	var store outbox.Store = sb.store
	if wake == WakePoll {
		store = storeOnly{sb.store}
	}
	relay, err := outbox.NewRelay(store, transport, cfg)
	if err != nil {
		return LatencyRun{}, err
	}
	if err := relay.Start(ctx); err != nil {
		return LatencyRun{}, err
	}
	defer func() { _ = relay.Stop(context.Background()) }()

	var written atomic.Int64
	commits, elapsed, err := benchutil.SteadyWrites(ctx, o.Clients, o.Rate, total, func(ctx context.Context, sent time.Time) error {
		m := &outbox.Message{Type: "ORDER_CREATED", Payload: samplePayload,
			Headers: map[string]string{benchutil.SentHeader: strconv.FormatInt(sent.UnixNano(), 10)}}
		if o.Ordered {
			m.Key = "order-" + strconv.FormatInt(written.Add(1)%int64(o.Keys), 10)
		}
		if err := sb.inTx(ctx, func(tx *sql.Tx) error { return sb.store.Add(ctx, tx, m) }); err != nil {
			return err
		}
		if wake == WakeSignal {
			sb.store.Notify()
		}
		return nil
	})
	if err != nil {
		return LatencyRun{}, fmt.Errorf("mysqlbench: latency: write: %w", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := transport.WaitFor(waitCtx, total); err != nil {
		return LatencyRun{}, fmt.Errorf("mysqlbench: latency (%s): %d of %d delivered: %w", wake, transport.Len(), total, err)
	}
	lat := deliveries.Latencies()
	run := LatencyRun{
		Wake: wake, Seconds: elapsed.Seconds(), Events: total, AchievedPS: float64(total) / elapsed.Seconds(),
		P50Ms: benchutil.Ms(benchutil.Percentile(lat, 0.50)), P99Ms: benchutil.Ms(benchutil.Percentile(lat, 0.99)), MaxMs: benchutil.Ms(benchutil.Percentile(lat, 1)),
		CommitP50Ms: benchutil.Ms(benchutil.Percentile(commits, 0.50)), CommitP99Ms: benchutil.Ms(benchutil.Percentile(commits, 0.99)),
	}
	run.Ratio = ratio(run.P50Ms, run.CommitP50Ms)
	return run, nil
}
