// Package kafkabench measures how close the relay comes to the raw publishing speed of Kafka.
//
// Run publishes the same events three times per round, each time into a fresh topic. Twice
// straight through franz-go — one client, idempotent, acks from all in-sync replicas, the
// transport's batch size limit and compression, no linger, Concurrency goroutines each producing
// BatchSize records and waiting for their answers, the records carrying the key, envelope and
// outbox.* headers the transport sends: once building each record from its message in the loop
// (the root package's envelope encoder, as any program publishing outbox messages must), which is the raw
// baseline, and once with the records built beforehand, the ceiling of the client and the
// brokers alone. And once through the outbox: an in-memory store, outbox.Relay with the same
// Concurrency and BatchSize, and the Kafka transport with that Concurrency of flushes in
// flight. All three warm up before their clock starts: the raw client produces a record to every
// partition, and the transport publishes such a batch Concurrency times, one after another, so
// that each of its producer clients has connected to every partition's leader, learned the
// topic and got a producer ID. Rounds alternate the three so that the machine's state affects them alike. The result
// is the relay's rate as a ratio to the raw rate; the design target is at least 0.8, in the
// main shape (20000 events) and in a short-drain shape (2000 events, 15 rounds).
//
// With Ordered, the raw loop keeps each key's order as a plain client must: the goroutines
// build their batches at once but hand them to the client in the events' order, so that the
// one idempotent producer keeps every partition's records in that order; none waits for a
// batch's answers before the next batch goes in. Unordered, each goroutine calls ProduceSync
// as soon as its batch is built, and batches overtake one another.
//
// With no Brokers it starts an in-process kfake cluster (three brokers), so it runs anywhere;
// kfake keeps records in memory and does not replicate, so the numbers are those of the client
// path, not of a broker's disk and network.
//
//	go test -run '^$' -bench RelayVsRaw -benchtime 1x ./internal/kafkabench   (in cmd/outbox)
package kafkabench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/transport/kafka"
)

// Config sets up a benchmark run. The zero value of every field means its documented default.
type Config struct {
	// Brokers are the seed brokers of the cluster to measure. Default: an in-process kfake
	// cluster of three brokers, started and stopped by Run.
	Brokers []string
	// Events is how many events each measurement publishes. Default 20000.
	Events int
	// PayloadBytes is the size of each event's JSON payload. Default 200.
	PayloadBytes int
	// Keys is how many distinct message keys the events cycle through; 0 means the default,
	// -1 means no keys. Default 100.
	Keys int
	// Partitions of each topic Run creates. Default 6.
	Partitions int
	// Ordered runs the relay in ordered mode. Default false.
	Ordered bool
	// BatchSize is how many events the relay claims and publishes at once, and how many the
	// raw loop produces before waiting for their answers. Default 250.
	BatchSize int
	// Concurrency is how many batches are in flight: the relay's Concurrency and the
	// transport's (its flushes in flight), and the raw loop's goroutines. Default 4.
	Concurrency int
	// Rounds is how many times each measurement runs, raw and relay alternating. Default 9.
	Rounds int
	// ShortEvents is how many events each measurement of the short-drain shape publishes, run
	// after the main one with the same settings otherwise: a drain of a few milliseconds, where
	// start-up and the first batches weigh most. Default 2000; -1 skips the shape.
	ShortEvents int
	// ShortRounds is how many rounds the short-drain shape runs. Default 15.
	ShortRounds int
}

func (c Config) withDefaults() Config {
	if c.Events == 0 {
		c.Events = 20000
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = 200
	}
	if c.Keys == 0 {
		c.Keys = 100
	}
	if c.Partitions == 0 {
		c.Partitions = 6
	}
	if c.BatchSize == 0 {
		c.BatchSize = 250
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.Rounds == 0 {
		c.Rounds = 9
	}
	if c.ShortEvents == 0 {
		c.ShortEvents = 2000
	}
	if c.ShortRounds == 0 {
		c.ShortRounds = 15
	}
	return c
}

// Result is what Run measured.
type Result struct {
	Events       int    `json:"events"`
	PayloadBytes int    `json:"payload_bytes"`
	Keys         int    `json:"keys"`
	Partitions   int    `json:"partitions"`
	Ordered      bool   `json:"ordered"`
	BatchSize    int    `json:"batch_size"`
	Concurrency  int    `json:"concurrency"`
	Rounds       int    `json:"rounds"`
	Cluster      string `json:"cluster"` // "kfake" or "brokers"
	GoVersion    string `json:"go_version"`
	CPUs         int    `json:"cpus"`
	// RawPerSec, PreEncodedPerSec and RelayPerSec are the median events/s of each
	// measurement: the raw loop building its records, the raw loop with records built
	// beforehand, and the relay.
	RawPerSec        float64 `json:"raw_events_per_sec"`
	PreEncodedPerSec float64 `json:"raw_preencoded_events_per_sec"`
	RelayPerSec      float64 `json:"relay_events_per_sec"`
	// Ratio is the median over rounds of relay/raw events/s, each round's pair measured back
	// to back; on a shared machine it is steadier than a ratio of medians. Target is the design
	// goal for it.
	Ratio  float64 `json:"ratio"`
	Target float64 `json:"target"`
	// PreEncodedRatio is the same median of relay / pre-encoded raw: what building records
	// from messages costs on top of the client's own ceiling.
	PreEncodedRatio float64 `json:"preencoded_ratio"`
	// RawRounds, PreEncodedRounds, RelayRounds and RoundRatios are every round's numbers.
	RawRounds        []float64 `json:"raw_rounds"`
	PreEncodedRounds []float64 `json:"raw_preencoded_rounds"`
	RelayRounds      []float64 `json:"relay_rounds"`
	RoundRatios      []float64 `json:"round_ratios"`
	// RelayPublishesInFlight is the most Publish calls the relay had in flight at once, over
	// all rounds. In ordered mode it is how many batches over different keys the store's claims
	// let the relay have out together: 1 means the relay published one batch at a time.
	RelayPublishesInFlight int64 `json:"relay_publishes_in_flight"`
	// Short is the short-drain shape's result: ShortEvents events per measurement, ShortRounds
	// rounds. Nil when skipped.
	Short *Result `json:"short,omitempty"`
}

// Target is the design goal for Result.Ratio.
const Target = 0.8

// JSON returns r as indented JSON.
func (r Result) JSON() string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

// Run measures the raw and the relay publishing rates, in the main shape and then the
// short-drain one. It creates a topic per measurement and
// deletes them afterwards.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Events < 0 || cfg.PayloadBytes < 0 || cfg.Keys < -1 || cfg.Partitions < 0 || cfg.BatchSize < 0 || cfg.Concurrency < 0 || cfg.Rounds < 0 || cfg.ShortEvents < -1 || cfg.ShortRounds < 0 {
		return Result{}, errors.New("kafkabench: config fields must not be negative (Keys and ShortEvents may be -1)")
	}
	cfg = cfg.withDefaults()
	res, err := runShape(ctx, cfg)
	if err != nil || cfg.ShortEvents < 0 {
		return res, err
	}
	short := cfg
	short.Events, short.Rounds = cfg.ShortEvents, cfg.ShortRounds
	sres, err := runShape(ctx, short)
	res.Short = &sres
	return res, err
}

// runShape measures one shape: cfg.Events events, cfg.Rounds rounds.
func runShape(ctx context.Context, cfg Config) (Result, error) {
	res := Result{
		Events: cfg.Events, PayloadBytes: cfg.PayloadBytes, Keys: max(cfg.Keys, 0), Partitions: cfg.Partitions,
		Ordered: cfg.Ordered, BatchSize: cfg.BatchSize, Concurrency: cfg.Concurrency, Rounds: cfg.Rounds,
		Cluster: "brokers", GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Target: Target,
	}
	b := &bench{cfg: cfg}
	if err := b.setup(ctx); err != nil {
		b.teardown()
		return res, err
	}
	defer b.teardown()
	if b.fake != nil {
		res.Cluster = "kfake"
	}

	var preRatios []float64
	for range cfg.Rounds {
		raw, err := b.raw(ctx, false)
		if err != nil {
			return res, err
		}
		relayed, inFlight, err := b.relay(ctx)
		if err != nil {
			return res, err
		}
		res.RelayPublishesInFlight = max(res.RelayPublishesInFlight, inFlight)
		pre, err := b.raw(ctx, true)
		if err != nil {
			return res, err
		}
		res.RawRounds = append(res.RawRounds, raw)
		res.PreEncodedRounds = append(res.PreEncodedRounds, pre)
		res.RelayRounds = append(res.RelayRounds, relayed)
		res.RoundRatios = append(res.RoundRatios, relayed/raw)
		preRatios = append(preRatios, relayed/pre)
	}
	res.RawPerSec, res.RelayPerSec = benchutil.Median(res.RawRounds), benchutil.Median(res.RelayRounds)
	res.PreEncodedPerSec = benchutil.Median(res.PreEncodedRounds)
	res.Ratio, res.PreEncodedRatio = benchutil.Median(res.RoundRatios), benchutil.Median(preRatios)
	return res, nil
}

type bench struct {
	cfg     Config
	fake    *kfake.Cluster
	brokers []string
	adminCl *kgo.Client
	admin   *kadm.Client
	topics  []string
}

func (b *bench) setup(ctx context.Context) error {
	b.brokers = b.cfg.Brokers
	if len(b.brokers) == 0 {
		fake, err := kfake.NewCluster(kfake.NumBrokers(3))
		if err != nil {
			return fmt.Errorf("kafkabench: start kfake: %w", err)
		}
		b.fake, b.brokers = fake, fake.ListenAddrs()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...))
	if err != nil {
		return fmt.Errorf("kafkabench: admin client: %w", err)
	}
	b.adminCl, b.admin = cl, kadm.NewClient(cl)
	return nil
}

func (b *bench) teardown() {
	if b.admin != nil && len(b.topics) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = b.admin.DeleteTopics(ctx, b.topics...)
		cancel()
	}
	if b.adminCl != nil {
		b.adminCl.Close()
	}
	if b.fake != nil {
		b.fake.Close()
	}
}

func (b *bench) newTopic(ctx context.Context, what string) (string, error) {
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := "outbox-bench-" + what + "-" + hex.EncodeToString(r[:])
	res, err := b.admin.CreateTopic(ctx, int32(b.cfg.Partitions), -1, nil, name)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return "", fmt.Errorf("kafkabench: create topic: %w", err)
	}
	b.topics = append(b.topics, name)
	return name, nil
}

// transportConfig is the transport's configuration in both measurements; the raw client takes
// its producer settings from it.
func (b *bench) transportConfig(topic string) kafka.Config {
	return kafka.Config{Connection: kafka.Connection{Brokers: b.brokers}, Topic: topic, Concurrency: b.cfg.Concurrency}
}

// events returns cfg.Events prepared messages.
func (b *bench) events() ([]*outbox.Message, error) {
	pad := strings.Repeat("x", max(0, b.cfg.PayloadBytes-30))
	msgs := make([]*outbox.Message, b.cfg.Events)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: "BENCH_EVENT", Payload: json.RawMessage(`{"n":` + strconv.Itoa(i) + `,"pad":"` + pad + `"}`)}
		if b.cfg.Keys > 0 {
			msgs[i].Key = "key-" + strconv.Itoa(i%b.cfg.Keys)
		}
	}
	return msgs, backend.Prepare(context.Background(), msgs, backend.WriteOptions{})
}

// raw produces the events with one franz-go client, Concurrency goroutines each producing
// BatchSize records and waiting for their answers: records built as the transport builds them,
// in the loop or, with preEncoded, beforehand. It returns events/s.
func (b *bench) raw(ctx context.Context, preEncoded bool) (float64, error) {
	topic, err := b.newTopic(ctx, "raw")
	if err != nil {
		return 0, err
	}
	msgs, err := b.events()
	if err != nil {
		return 0, err
	}
	tc := b.transportConfig(topic)
	tc.MaxMessageBytes = kafka.DefaultMaxMessageBytes
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(tc.Brokers...),
		kgo.ClientID(kafka.DefaultClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent writes are franz-go's default
		kgo.ProducerBatchMaxBytes(int32(tc.MaxMessageBytes)),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordDeliveryTimeout(kafka.DefaultDeliveryTimeout),
		// Every goroutine waits for its batch's answers, so lingering only delays them.
		// ProduceSync sends its partitions at once without this; the ordered loop's Produce
		// calls would sit out the default 10ms linger.
		kgo.ProducerLinger(0),
	)
	if err != nil {
		return 0, fmt.Errorf("kafkabench: raw client: %w", err)
	}
	defer cl.Close()

	build := func(msgs []*outbox.Message) ([]*kgo.Record, error) {
		recs := make([]*kgo.Record, len(msgs))
		for i, m := range msgs {
			value, err := backend.EncodeEnvelope(make([]byte, 0, len(m.Payload)+128), m)
			if err != nil {
				return nil, err
			}
			r := &kgo.Record{Topic: topic, Value: value, Headers: []kgo.RecordHeader{{Key: kafka.HeaderType, Value: []byte(m.Type)}}}
			if m.Key != "" {
				r.Key = []byte(m.Key)
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: kafka.HeaderKey, Value: []byte(m.Key)})
			}
			recs[i] = r
		}
		return recs, nil
	}
	var batches [][]*outbox.Message
	var built [][]*kgo.Record
	for i := 0; i < len(msgs); i += b.cfg.BatchSize {
		batch := msgs[i:min(i+b.cfg.BatchSize, len(msgs))]
		batches = append(batches, batch)
		if preEncoded {
			recs, err := build(batch)
			if err != nil {
				return 0, err
			}
			built = append(built, recs)
		}
	}
	// Warm up before the clock starts: connect to every partition's leader, learn the topic,
	// get a producer ID.
	var warm []*kgo.Record
	for _, m := range b.warmUpEvents() {
		warm = append(warm, &kgo.Record{Topic: topic, Key: []byte(m.Key), Value: []byte(`{}`)})
	}
	if err := cl.ProduceSync(ctx, warm...).FirstErr(); err != nil {
		return 0, fmt.Errorf("kafkabench: raw warm-up: %w", err)
	}
	// In ordered mode a key's records must reach the client in the order of the events, so
	// the batches, built at once by the goroutines, are handed to the client in turn: batch i
	// is buffered once batch i-1 is, and one idempotent client then keeps every partition's
	// records in that order. A goroutine does not wait for its batch's answers before the next
	// batch goes in: per-key order asks that of no client whose producer keeps a partition's
	// records in order.
	var turns []chan struct{}
	if b.cfg.Ordered {
		turns = make([]chan struct{}, len(batches)+1)
		for i := range turns {
			turns[i] = make(chan struct{})
		}
		close(turns[0])
	}
	var next atomic.Int64
	var failed atomic.Bool
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range b.cfg.Concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(batches) {
					return
				}
				// After a failure the remaining batches are only passed over, in turn.
				var batch []*kgo.Record
				var err error
				switch {
				case failed.Load():
				case preEncoded:
					batch = built[i]
				default:
					batch, err = build(batches[i])
				}
				if err == nil {
					err = b.produce(ctx, cl, batch, turns, i, &failed)
				} else {
					failed.Store(true)
					_ = b.produce(ctx, cl, nil, turns, i, &failed)
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(len(msgs)) / elapsed.Seconds(), nil
}

// produce sends batch i with cl and waits for its answers. Unordered, that is ProduceSync;
// ordered (turns set), batch i is buffered only after batch i-1, and the turn passes on as soon
// as it is. Once failed is set it sends nothing, but still passes the turn on, so that no
// goroutine waits forever.
func (b *bench) produce(ctx context.Context, cl *kgo.Client, batch []*kgo.Record, turns []chan struct{}, i int, failed *atomic.Bool) error {
	if turns == nil {
		if failed.Load() {
			return nil
		}
		if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			return fmt.Errorf("kafkabench: raw produce: %w", err)
		}
		return nil
	}
	select {
	case <-turns[i]:
	case <-ctx.Done():
		return ctx.Err()
	}
	if failed.Load() {
		close(turns[i+1])
		return nil
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	wg.Add(len(batch))
	for _, r := range batch {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
			wg.Done()
		})
	}
	close(turns[i+1])
	wg.Wait()
	if first != nil {
		return fmt.Errorf("kafkabench: raw produce: %w", first)
	}
	return nil
}

// warmUpKeyPrefix starts the keys of warm-up records.
const warmUpKeyPrefix = "warm-"

// warmUpKeys is how many distinct keys a warm-up spreads its records over: enough for the
// default partitioner to reach every partition of the benchmark's topics.
const warmUpKeys = 256

// warmUpEvents returns the records of a warm-up as messages: one per warm-up key, so that they
// reach every partition, and so every broker that leads one.
func (b *bench) warmUpEvents() []*outbox.Message {
	msgs := make([]*outbox.Message, warmUpKeys)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: "BENCH_WARM_UP", Key: warmUpKeyPrefix + strconv.Itoa(i), Payload: json.RawMessage(`{}`)}
	}
	return msgs
}

// warmUp publishes through tr before the clock starts, Concurrency times one after another, so
// that each of its producer clients (the lanes take turns) has connected to every partition's
// leader, learned the topic and got a producer ID, as the raw client has.
func (b *bench) warmUp(ctx context.Context, tr *kafka.Transport) error {
	for range b.cfg.Concurrency {
		m := b.warmUpEvents()
		err := backend.Prepare(ctx, m, backend.WriteOptions{})
		if err == nil {
			err = tr.Publish(ctx, m)
		}
		if err != nil {
			return fmt.Errorf("kafkabench: relay warm-up: %w", err)
		}
	}
	return nil
}

// relay publishes the events through an in-memory store, outbox.Relay and the Kafka transport,
// from a full backlog until the store is drained. It returns events/s and the most Publish
// calls that were in flight at once.
func (b *bench) relay(ctx context.Context) (float64, int64, error) {
	topic, err := b.newTopic(ctx, "relay")
	if err != nil {
		return 0, 0, err
	}
	tr, err := kafka.New(ctx, b.transportConfig(topic))
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = tr.Close() }()
	msgs, err := b.events()
	if err != nil {
		return 0, 0, err
	}
	if err := b.warmUp(ctx, tr); err != nil {
		return 0, 0, err
	}
	c := &counting{Transport: tr}
	rate, err := benchutil.RelayDrain(ctx, "kafkabench", c, outbox.Config{BatchSize: b.cfg.BatchSize, Concurrency: b.cfg.Concurrency, Unordered: !b.cfg.Ordered}, msgs)
	return rate, c.peak.Load(), err
}

// counting is the transport as the relay measurement sees it, counting the Publish calls in
// flight; it keeps the transport's KeepsKeyOrder, so the relay takes the same ordered path.
type counting struct {
	*kafka.Transport
	now, peak atomic.Int64
}

func (c *counting) Publish(ctx context.Context, msgs []*outbox.Message) error {
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
	}
	return c.Transport.Publish(ctx, msgs)
}
