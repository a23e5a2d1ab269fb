// Package rabbitmqbench measures how close the relay comes to the raw publishing speed of
// RabbitMQ with publisher confirms.
//
// Run publishes the same kind of events twice per round into one durable queue: once straight
// through amqp091-go on a confirm-mode channel — messages built beforehand with the properties
// and headers the transport sends (persistent, mandatory, message-id, type, outbox.type), at
// most Window confirms outstanding, every confirm awaited — the ceiling of the client and the
// broker; and once through the outbox: an in-memory store, outbox.Relay and the RabbitMQ
// transport, whose BatchSize × RelayConcurrency messages in flight equal the same Window.
// Rounds alternate raw and relay so that the machine's state affects both alike, and the queue
// is purged between measurements. The result is the relay's rate as a ratio to the raw rate;
// the design target is at least 0.8.
//
//	go test -run '^$' -bench RelayVsRaw -benchtime 1x ./internal/rabbitmqbench   (in cmd/outbox)
package rabbitmqbench

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

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// DefaultURL is the broker the benchmark uses by default: a local RabbitMQ with its stock user.
const DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// Config sets up a benchmark run. The zero value of every field means its documented default.
type Config struct {
	// URL is the broker. Default amqp://guest:guest@127.0.0.1:5672/ (DefaultURL).
	URL string
	// Events is how many events each measurement publishes. Default 20000.
	Events int
	// PayloadBytes is the size of each event's JSON payload. Default 200.
	PayloadBytes int
	// BatchSize is how many events the relay claims and publishes at once. Default 250.
	BatchSize int
	// RelayConcurrency is how many claim-publish-ack cycles the relay runs at once. Default 4.
	RelayConcurrency int
	// Rounds is how many times each measurement runs, raw and relay alternating. Default 11.
	Rounds int
}

func (c Config) withDefaults() Config {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Events == 0 {
		c.Events = 20000
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = 200
	}
	if c.BatchSize == 0 {
		c.BatchSize = 250
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
	Events           int `json:"events"`
	PayloadBytes     int `json:"payload_bytes"`
	BatchSize        int `json:"relay_batch_size"`
	RelayConcurrency int `json:"relay_concurrency"`
	// Window is how many confirms the raw publisher keeps outstanding: BatchSize ×
	// RelayConcurrency, what the relay has in flight at most.
	Window    int    `json:"raw_window"`
	Rounds    int    `json:"rounds"`
	Broker    string `json:"broker"` // the URL without its password
	Server    string `json:"server_version"`
	GoVersion string `json:"go_version"`
	CPUs      int    `json:"cpus"`
	// RawPerSec and RelayPerSec are the median events/s of each measurement.
	RawPerSec   float64 `json:"raw_events_per_sec"`
	RelayPerSec float64 `json:"relay_events_per_sec"`
	// Ratio is the median over rounds of relay/raw events/s, each round's pair measured back
	// to back; on a shared machine it is steadier than a ratio of medians. Target is the design
	// goal for it.
	Ratio  float64 `json:"ratio"`
	Target float64 `json:"target"`
	// RawRounds, RelayRounds and RoundRatios are every round's numbers, in order.
	RawRounds   []float64 `json:"raw_rounds"`
	RelayRounds []float64 `json:"relay_rounds"`
	RoundRatios []float64 `json:"round_ratios"`
}

// Target is the design goal for Result.Ratio.
const Target = 0.8

// JSON returns r as indented JSON.
func (r Result) JSON() string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

// Run measures the raw and the relay publishing rates against cfg.URL. It declares its own
// queue and deletes it afterwards.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Events < 0 || cfg.PayloadBytes < 0 || cfg.BatchSize < 0 || cfg.RelayConcurrency < 0 || cfg.Rounds < 0 {
		return Result{}, errors.New("rabbitmqbench: config fields must not be negative")
	}
	cfg = cfg.withDefaults()
	res := Result{
		Events: cfg.Events, PayloadBytes: cfg.PayloadBytes, BatchSize: cfg.BatchSize,
		RelayConcurrency: cfg.RelayConcurrency, Window: cfg.BatchSize * cfg.RelayConcurrency, Rounds: cfg.Rounds,
		Broker: rabbitmq.RedactURL(cfg.URL), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Target: Target,
	}
	b := &bench{cfg: cfg, window: res.Window}
	if err := b.setup(); err != nil {
		return res, err
	}
	defer b.teardown()
	if v, ok := b.conn.Properties["version"].(string); ok {
		res.Server = "RabbitMQ " + v
	}

	for range cfg.Rounds {
		raw, err := b.raw(ctx)
		if err != nil {
			return res, err
		}
		res.RawRounds = append(res.RawRounds, raw)
		relayed, err := b.relay(ctx)
		if err != nil {
			return res, err
		}
		res.RelayRounds = append(res.RelayRounds, relayed)
		res.RoundRatios = append(res.RoundRatios, relayed/raw)
	}
	res.RawPerSec, res.RelayPerSec = benchutil.Median(res.RawRounds), benchutil.Median(res.RelayRounds)
	res.Ratio = benchutil.Median(res.RoundRatios)
	return res, nil
}

type bench struct {
	cfg    Config
	window int
	conn   *amqp.Connection // the raw publisher's, and the admin's
	admin  *amqp.Channel
	raws   *amqp.Channel // confirm mode
	tr     *rabbitmq.Transport
	queue  string
}

func (b *bench) setup() error {
	var err error
	if b.conn, err = amqp.Dial(b.cfg.URL); err != nil {
		return fmt.Errorf("rabbitmqbench: connect to %s: %w", rabbitmq.RedactURL(b.cfg.URL), err)
	}
	if b.admin, err = b.conn.Channel(); err != nil {
		return fmt.Errorf("rabbitmqbench: %w", err)
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	b.queue = "outbox-bench-" + hex.EncodeToString(r[:])
	// Durable, like a production queue: with persistent messages a confirm means the broker
	// wrote them to disk, in both measurements.
	if _, err = b.admin.QueueDeclare(b.queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmqbench: declare queue: %w", err)
	}
	if b.raws, err = b.conn.Channel(); err != nil {
		return fmt.Errorf("rabbitmqbench: %w", err)
	}
	if err = b.raws.Confirm(false); err != nil {
		return fmt.Errorf("rabbitmqbench: confirm mode: %w", err)
	}
	// Returns must be taken, or the library would block; the queue exists, so none come.
	returns := b.raws.NotifyReturn(make(chan amqp.Return, 16))
	go func() {
		for range returns {
		}
	}()
	b.tr, err = rabbitmq.New(context.Background(), rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(b.cfg.URL), ConnectionName: "outbox-bench"}, RoutingKey: b.queue})
	return err
}

func (b *bench) teardown() {
	if b.tr != nil {
		_ = b.tr.Close()
	}
	if b.admin != nil {
		_, _ = b.admin.QueueDelete(b.queue, false, false, false)
	}
	if b.conn != nil {
		_ = b.conn.Close()
	}
}

// events returns cfg.Events prepared messages.
func (b *bench) events() ([]*outbox.Message, error) {
	pad := strings.Repeat("x", max(0, b.cfg.PayloadBytes-30))
	msgs := make([]*outbox.Message, b.cfg.Events)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: "BENCH_EVENT", Payload: json.RawMessage(`{"n":` + strconv.Itoa(i) + `,"pad":"` + pad + `"}`)}
	}
	return msgs, backend.Prepare(context.Background(), msgs, backend.WriteOptions{})
}

func (b *bench) purge() error {
	if _, err := b.admin.QueuePurge(b.queue, false); err != nil {
		return fmt.Errorf("rabbitmqbench: purge: %w", err)
	}
	return nil
}

// raw publishes the events on the confirm channel, bodies encoded beforehand, with the
// transport's properties and headers, keeping at most window confirms outstanding. It returns
// events/s.
func (b *bench) raw(ctx context.Context) (float64, error) {
	if err := b.purge(); err != nil {
		return 0, err
	}
	msgs, err := b.events()
	if err != nil {
		return 0, err
	}
	pubs := make([]amqp.Publishing, len(msgs))
	for i, m := range msgs {
		body, err := backend.EncodeEnvelope(nil, m)
		if err != nil {
			return 0, err
		}
		pubs[i] = amqp.Publishing{
			Headers:      amqp.Table{rabbitmq.HeaderType: m.Type},
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    m.ID,
			Timestamp:    m.CreatedAt,
			Type:         m.Type,
			Body:         body,
		}
	}
	ring := make([]*amqp.DeferredConfirmation, 0, b.window)
	await := func(dc *amqp.DeferredConfirmation) error {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("rabbitmqbench: raw: %w", err)
		}
		if !ok {
			return errors.New("rabbitmqbench: raw: the broker nacked a message")
		}
		return nil
	}
	start := time.Now()
	for i := range pubs {
		if len(ring) == b.window {
			if err := await(ring[0]); err != nil {
				return 0, err
			}
			ring = ring[1:]
		}
		dc, err := b.raws.PublishWithDeferredConfirm("", b.queue, true, false, pubs[i])
		if err != nil {
			return 0, fmt.Errorf("rabbitmqbench: raw publish: %w", err)
		}
		ring = append(ring, dc)
	}
	for _, dc := range ring {
		if err := await(dc); err != nil {
			return 0, err
		}
	}
	return float64(len(msgs)) / time.Since(start).Seconds(), nil
}

// relay publishes the events through an in-memory store, outbox.Relay and the transport, from a
// full backlog until the store is drained. It returns events/s.
func (b *bench) relay(ctx context.Context) (float64, error) {
	if err := b.purge(); err != nil {
		return 0, err
	}
	msgs, err := b.events()
	if err != nil {
		return 0, err
	}
	return benchutil.RelayDrain(ctx, "rabbitmqbench", b.tr, outbox.Config{BatchSize: b.cfg.BatchSize, Concurrency: b.cfg.RelayConcurrency}, msgs)
}
