// Package natsbench measures how close the relay comes to the raw publishing speed of NATS
// JetStream.
//
// Run publishes the same kind of events three times per round into one stream, purged between
// measurements. Twice straight through nats.go's PublishMsgAsync on one connection, at most
// MaxPending PubAcks outstanding, every PubAck awaited, the messages carrying the envelope and
// the headers the transport sends (Nats-Msg-Id, outbox.type): once building each message from
// its outbox.Message in the loop (the root package's envelope encoder, as any program publishing outbox
// messages must), which is the raw baseline, and once with the messages built beforehand, the
// ceiling of the client and the server alone. And once through the outbox: an in-memory store,
// outbox.Relay and the NATS transport, on the same connection with the same MaxPending. Rounds
// alternate the three so that the machine's state affects them alike. The result is the
// relay's rate as a ratio to the raw rate; the design target is at least 0.8.
//
//	go test -run '^$' -bench RelayVsRaw -benchtime 1x ./internal/natsbench   (in cmd/outbox)
package natsbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// Config sets up a benchmark run. The zero value of every field means its documented default.
type Config struct {
	// URL is the NATS server, with JetStream enabled. Default nats://127.0.0.1:4222.
	URL string
	// Events is how many events each measurement publishes. Default 20000.
	Events int
	// PayloadBytes is the size of each event's JSON payload. Default 200.
	PayloadBytes int
	// MaxPending bounds the PubAcks outstanding, in both measurements. Default
	// outboxnats.DefaultMaxPending.
	MaxPending int
	// FileStorage makes the stream store on disk. Default false: a memory stream, so that the
	// measurement is of the publishing path, not of the disk.
	FileStorage bool
	// BatchSize is how many events the relay claims and publishes at once. Default 500.
	BatchSize int
	// RelayConcurrency is how many claim-publish-ack cycles the relay runs at once. Default 4:
	// with BatchSize 500, two cycles fill MaxPending while the others settle and claim, so the
	// pipeline never drains between batches.
	RelayConcurrency int
	// Rounds is how many times each measurement runs, raw and relay alternating. Default 11.
	Rounds int
}

func (c Config) withDefaults() Config {
	if c.URL == "" {
		c.URL = outboxnats.DefaultURL
	}
	if c.Events == 0 {
		c.Events = 20000
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = 200
	}
	if c.MaxPending == 0 {
		c.MaxPending = outboxnats.DefaultMaxPending
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.RelayConcurrency == 0 {
		c.RelayConcurrency = 4
	}
	if c.Rounds == 0 {
		c.Rounds = 11
	}
	return c
}

// Result is what Run measured.
type Result struct {
	Events           int    `json:"events"`
	PayloadBytes     int    `json:"payload_bytes"`
	MaxPending       int    `json:"max_pending"`
	Storage          string `json:"storage"`
	BatchSize        int    `json:"relay_batch_size"`
	RelayConcurrency int    `json:"relay_concurrency"`
	Rounds           int    `json:"rounds"`
	Server           string `json:"server_version"`
	GoVersion        string `json:"go_version"`
	CPUs             int    `json:"cpus"`
	// RawPerSec, PreEncodedPerSec and RelayPerSec are the median events/s of each
	// measurement: raw building each message in its loop, raw with the messages built
	// beforehand, and the relay.
	RawPerSec        float64 `json:"raw_events_per_sec"`
	PreEncodedPerSec float64 `json:"raw_preencoded_events_per_sec"`
	RelayPerSec      float64 `json:"relay_events_per_sec"`
	// Ratio is the median over rounds of relay/raw events/s, each round's measurements taken
	// back to back; on a shared machine it is steadier than a ratio of medians. Target is the
	// design goal for it.
	Ratio  float64 `json:"ratio"`
	Target float64 `json:"target"`
	// PreEncodedRatio is the same median of relay / pre-encoded raw: what building messages
	// costs on top of the client's own ceiling.
	PreEncodedRatio float64 `json:"preencoded_ratio"`
	// RawRounds, PreEncodedRounds, RelayRounds and RoundRatios are every round's numbers.
	RawRounds        []float64 `json:"raw_rounds"`
	PreEncodedRounds []float64 `json:"raw_preencoded_rounds"`
	RelayRounds      []float64 `json:"relay_rounds"`
	RoundRatios      []float64 `json:"round_ratios"`
}

// Target is the design goal for Result.Ratio.
const Target = 0.8

// JSON returns r as indented JSON.
func (r Result) JSON() string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

// Run measures the raw and the relay publishing rates against cfg.URL. It creates its own
// stream and deletes it afterwards.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Events < 0 || cfg.PayloadBytes < 0 || cfg.MaxPending < 0 || cfg.BatchSize < 0 || cfg.RelayConcurrency < 0 || cfg.Rounds < 0 {
		return Result{}, errors.New("natsbench: config fields must not be negative")
	}
	cfg = cfg.withDefaults()
	res := Result{
		Events: cfg.Events, PayloadBytes: cfg.PayloadBytes, MaxPending: cfg.MaxPending, Storage: "memory",
		BatchSize: cfg.BatchSize, RelayConcurrency: cfg.RelayConcurrency, Rounds: cfg.Rounds,
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Target: Target,
	}
	if cfg.FileStorage {
		res.Storage = "file"
	}
	b := &bench{cfg: cfg}
	if err := b.setup(ctx); err != nil {
		return res, err
	}
	defer b.teardown()
	res.Server = b.nc.ConnectedServerVersion()

	var preRatios []float64
	for range cfg.Rounds {
		raw, err := b.raw(ctx, false)
		if err != nil {
			return res, err
		}
		pre, err := b.raw(ctx, true)
		if err != nil {
			return res, err
		}
		relayed, err := b.relay(ctx)
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
	cfg    Config
	nc     *natsgo.Conn
	js     jetstream.JetStream // the raw publisher, and stream administration
	stream jetstream.Stream
	name   string
	prefix string
	tr     *outboxnats.Transport
}

// subjectType is the Type of every event; the subject is prefix.BENCH_EVENT in both runs.
const subjectType = "BENCH_EVENT"

func (b *bench) setup(ctx context.Context) error {
	nc, err := natsgo.Connect(b.cfg.URL, natsgo.Name("outbox-bench"), natsgo.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("natsbench: connect to %s: %w", b.cfg.URL, err)
	}
	b.nc = nc
	if b.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(b.cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(outboxnats.DefaultAckTimeout),
	); err != nil {
		nc.Close()
		return err
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	b.name, b.prefix = "OUTBOX_BENCH_"+hex.EncodeToString(r[:]), "outboxbench"+hex.EncodeToString(r[:])
	storage := jetstream.MemoryStorage
	if b.cfg.FileStorage {
		storage = jetstream.FileStorage
	}
	if b.stream, err = b.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: b.name, Subjects: []string{b.prefix + ".>"}, Storage: storage,
	}); err != nil {
		nc.Close()
		return fmt.Errorf("natsbench: create stream: %w", err)
	}
	// One transport on the same connection for every relay round.
	if b.tr, err = outboxnats.New(ctx, outboxnats.Config{
		Connection: outboxnats.Connection{Conn: nc}, Subject: b.prefix + ".{type}", MaxPending: b.cfg.MaxPending,
	}); err != nil {
		b.teardown()
		return err
	}
	return nil
}

func (b *bench) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if b.tr != nil {
		_ = b.tr.Close()
	}
	_ = b.js.DeleteStream(ctx, b.name)
	b.nc.Close()
}

// events returns cfg.Events prepared messages with fresh IDs, so the stream's duplicate
// window never drops one.
func (b *bench) events() ([]*outbox.Message, error) {
	pad := strings.Repeat("x", max(0, b.cfg.PayloadBytes-30))
	msgs := make([]*outbox.Message, b.cfg.Events)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: subjectType, Payload: json.RawMessage(`{"n":` + strconv.Itoa(i) + `,"pad":"` + pad + `"}`)}
	}
	return msgs, backend.Prepare(context.Background(), msgs, backend.WriteOptions{})
}

// purge empties the stream between measurements and checks it held n messages.
func (b *bench) purge(ctx context.Context, n int) error {
	info, err := b.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("natsbench: stream info: %w", err)
	}
	if info.State.Msgs != uint64(n) {
		return fmt.Errorf("natsbench: the stream holds %d messages after publishing %d", info.State.Msgs, n)
	}
	if err := b.stream.Purge(ctx); err != nil {
		return fmt.Errorf("natsbench: purge: %w", err)
	}
	return nil
}

// raw publishes the events with PublishMsgAsync directly and awaits every PubAck. With
// preEncoded the messages are built before the clock starts; otherwise each is built from its
// outbox.Message in the loop, as a program publishing outbox messages by hand would. It returns
// events/s.
func (b *bench) raw(ctx context.Context, preEncoded bool) (float64, error) {
	msgs, err := b.events()
	if err != nil {
		return 0, err
	}
	subject := b.prefix + "." + subjectType
	build := func(m *outbox.Message) (*natsgo.Msg, error) {
		body, err := backend.EncodeEnvelope(make([]byte, 0, len(m.Payload)+128), m)
		if err != nil {
			return nil, err
		}
		return &natsgo.Msg{Subject: subject, Data: body, Header: natsgo.Header{
			jetstream.MsgIDHeader: {m.ID}, outboxnats.HeaderType: {m.Type},
		}}, nil
	}
	var built []*natsgo.Msg
	if preEncoded {
		built = make([]*natsgo.Msg, len(msgs))
		for i, m := range msgs {
			if built[i], err = build(m); err != nil {
				return 0, err
			}
		}
	}
	futures := make([]jetstream.PubAckFuture, len(msgs))
	opts := []jetstream.PublishOpt{jetstream.WithRetryAttempts(0), jetstream.WithStallWait(outboxnats.DefaultAckTimeout)}
	start := time.Now()
	for i, m := range msgs {
		var out *natsgo.Msg
		if preEncoded {
			out = built[i]
		} else if out, err = build(m); err != nil {
			return 0, err
		}
		if futures[i], err = b.js.PublishMsgAsync(out, opts...); err != nil {
			return 0, fmt.Errorf("natsbench: raw publish: %w", err)
		}
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return 0, fmt.Errorf("natsbench: raw publish: %w", err)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	elapsed := time.Since(start)
	return float64(len(msgs)) / elapsed.Seconds(), b.purge(ctx, len(msgs))
}

// relay publishes the events through an in-memory store, outbox.Relay and the NATS transport,
// from a full backlog until the store is drained. It returns events/s.
func (b *bench) relay(ctx context.Context) (float64, error) {
	msgs, err := b.events()
	if err != nil {
		return 0, err
	}
	rate, err := benchutil.RelayDrain(ctx, "natsbench", b.tr, outbox.Config{BatchSize: b.cfg.BatchSize, Concurrency: b.cfg.RelayConcurrency}, msgs)
	if err != nil {
		return 0, err
	}
	return rate, b.purge(ctx, len(msgs))
}
