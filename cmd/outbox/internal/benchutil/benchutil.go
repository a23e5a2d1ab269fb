// Package benchutil holds what the benchmark harnesses of the outbox command share: a backlog to
// drain, a steady load of writes, and the median that every result reports. It lives beside them, under the command, so
// neither the daemon's libraries nor the test kit (outboxtest) carry benchmark code.
package benchutil

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
)

// Backlog returns a memory store already holding n messages of type typ: the source of the
// benchmarks that measure what a relay adds over a raw loop.
func Backlog(ctx context.Context, n int, typ string) (*memstore.Store, error) {
	st := memstore.New()
	for i := 0; i < n; i += 1000 {
		batch := make([]*outbox.Message, min(1000, n-i))
		for j := range batch {
			batch[j] = &outbox.Message{Type: typ, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i+j))}
		}
		if err := st.Add(ctx, batch...); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// Median returns the middle value of xs (the mean of the middle two when even), 0 when empty.
// The benchmarks interleave their variants in rounds and report medians, which shrug off the
// stalls of a shared machine.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// RelayDrain publishes msgs through an in-memory store and outbox.Relay with cfg (MaxAttempts
// forced to 1, so a misbehaving broker shows at once) to tr, from a full backlog until every
// message is settled, and returns events/s. what names the benchmark in errors.
//
// The clock stops at the Ack that settles the last message, not at the next look at the relay's
// Stats: a drain of a few thousand events lasts a few milliseconds, of which a polling tick
// would be a fair share.
func RelayDrain(ctx context.Context, what string, tr outbox.Transport, cfg outbox.Config, msgs []*outbox.Message) (float64, error) {
	store := &drainStore{Store: memstore.New(), drained: make(chan struct{})}
	store.left.Store(int64(len(msgs)))
	if len(msgs) == 0 {
		close(store.drained)
	}
	if err := store.Add(ctx, msgs...); err != nil {
		return 0, err
	}
	cfg.MaxAttempts = 1
	relay, err := outbox.NewRelay(store, tr, cfg)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := relay.Start(ctx); err != nil {
		return 0, err
	}
	stop := func() error {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return relay.Stop(stopCtx)
	}
	// Failures are rare and end the run: a coarse tick finds them.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-store.drained:
			elapsed := time.Since(start)
			if err := stop(); err != nil {
				return 0, err
			}
			return float64(len(msgs)) / elapsed.Seconds(), nil
		case <-ctx.Done():
			_ = stop()
			return 0, fmt.Errorf("%s: relay: %d of %d published: %w", what, relay.Stats().Published, len(msgs), ctx.Err())
		case <-tick.C:
			if st := relay.Stats(); st.Dead > 0 || st.Failed > 0 {
				_ = stop()
				return 0, fmt.Errorf("%s: relay: %d events failed and %d died; the transport or broker misbehaved", what, st.Failed, st.Dead)
			}
		}
	}
}

// drainStore is the memory store of a drain, telling when its acks have settled every message.
type drainStore struct {
	*memstore.Store
	left    atomic.Int64
	drained chan struct{}
}

func (s *drainStore) Ack(ctx context.Context, token string, ids []string) (int, error) {
	n, err := s.Store.Ack(ctx, token, ids)
	if n > 0 && s.left.Add(-int64(n)) == 0 {
		close(s.drained)
	}
	return n, err
}

// SteadyWrites runs total writes at rate per second on clients goroutines: write i is due at
// start + i/rate and the next free client takes it, so the load stays steady and a slow write
// delays only its own. write gets the time it was sent. It returns how long each write took
// and how long the whole run did, or the first write's error.
func SteadyWrites(ctx context.Context, clients, rate, total int, write func(ctx context.Context, sent time.Time) error) (commits []time.Duration, elapsed time.Duration, err error) {
	due := make(chan time.Time, clients)
	took := make([][]time.Duration, clients)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for at := range due {
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
				sent := time.Now()
				if err := write(ctx, sent); err != nil {
					errs <- err
					return
				}
				took[c] = append(took[c], time.Since(sent))
			}
		})
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / float64(rate))
feed:
	for i := range total {
		select {
		case due <- start.Add(time.Duration(i) * interval):
		case err := <-errs:
			errs <- err
			break feed
		}
	}
	close(due)
	wg.Wait()
	elapsed = time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return nil, elapsed, err
	}
	for _, c := range took {
		commits = append(commits, c...)
	}
	return commits, elapsed, nil
}

// SentHeader carries a message's write time in nanoseconds through the latency benchmarks:
// CreatedAt has millisecond precision, too coarse for latencies of a few milliseconds.
const SentHeader = "x-bench-sent-ns"

// Deliveries records, for each message a transport hands to Record, how long ago SentHeader
// says it was written.
type Deliveries struct {
	mu        sync.Mutex
	latencies []time.Duration
}

// Record is a memory-transport subscriber.
func (d *Deliveries) Record(_ context.Context, m *outbox.Message) error {
	now := time.Now()
	ns, err := strconv.ParseInt(m.Headers[SentHeader], 10, 64)
	if err != nil {
		return outbox.Permanent(fmt.Errorf("benchutil: message without %s header", SentHeader))
	}
	d.mu.Lock()
	d.latencies = append(d.latencies, now.Sub(time.Unix(0, ns)))
	d.mu.Unlock()
	return nil
}

// Latencies returns a copy of what Record recorded.
func (d *Deliveries) Latencies() []time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.latencies)
}

// Percentile returns the p-th (0..1) of ds, sorting ds; zero when ds is empty.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(p*float64(len(ds))+0.5) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
