// Package sqsbench measures how close the relay comes to the raw publishing speed of SQS.
//
// Run publishes the same events twice against an SQS endpoint (normally the fauxqs emulator):
// once straight through SendMessageBatch, with pre-encoded bodies, N calls in flight — the
// ceiling of the SDK client and the server — and once through the outbox: an in-memory store,
// outbox.Relay and the SQS transport, whose SendMessageBatch calls use the same SDK client and the
// same N in flight. The result is the relay's rate as a ratio to the raw rate, both measured in
// the same run, interleaved, so the machine's state affects both alike. The design target is a
// ratio of at least 0.7.
//
//	go test -run '^$' -bench RelayVsRaw -benchtime 1x ./internal/sqsbench   (in cmd/outbox)
package sqsbench

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
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/transport/sqs"
)

// Config sets up a benchmark run. The zero value of every field means its documented default.
type Config struct {
	// Endpoint is the SQS endpoint. Default http://127.0.0.1:4566 (fauxqs).
	Endpoint string
	// Region is the signing region. Default us-east-1.
	Region string
	// Events is how many events each measurement publishes. Default 5000: many short rounds
	// resist a busy machine better than a few long ones.
	Events int
	// PayloadBytes is the size of each event's JSON payload. Default 200.
	PayloadBytes int
	// Concurrency is how many SendMessageBatch calls are in flight, in both measurements.
	// Default sqs.DefaultConcurrency.
	Concurrency int
	// BatchSize is how many events the relay claims and publishes at once. Default 100.
	BatchSize int
	// RelayConcurrency is how many claim-publish-ack cycles the relay runs at once. Default 4:
	// each cycle waits for its whole batch to be answered and then acknowledges and claims, so
	// with BatchSize 100 (10 SendMessageBatch calls) four cycles keep Concurrency calls in
	// flight while the others settle.
	RelayConcurrency int
	// Rounds is how many times each measurement runs, raw and relay alternating, so that both
	// see the machine in the same state. Default 15.
	Rounds int
	// FIFOGroup measures ordered mode on a FIFO queue with every event in one message group (one
	// hot key): the relay runs Ordered, and the raw loop keeps the group's order the only way a
	// client can, one SendMessageBatch in flight at a time.
	FIFOGroup bool
}

func (c Config) withDefaults() Config {
	if c.Endpoint == "" {
		c.Endpoint = "http://127.0.0.1:4566"
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Events == 0 {
		c.Events = 5000
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = 200
	}
	if c.Concurrency == 0 {
		c.Concurrency = sqs.DefaultConcurrency
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.RelayConcurrency == 0 {
		c.RelayConcurrency = 4
	}
	if c.Rounds == 0 {
		c.Rounds = 15
	}
	return c
}

// Result is what Run measured.
type Result struct {
	Events           int    `json:"events"`
	PayloadBytes     int    `json:"payload_bytes"`
	Concurrency      int    `json:"concurrency"`
	BatchSize        int    `json:"relay_batch_size"`
	RelayConcurrency int    `json:"relay_concurrency"`
	Rounds           int    `json:"rounds"`
	Endpoint         string `json:"endpoint"`
	FIFOGroup        bool   `json:"fifo_one_group"`
	GoVersion        string `json:"go_version"`
	CPUs             int    `json:"cpus"`
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
const Target = 0.7

// fifoGroup is the one message group (Key) of a FIFOGroup run.
const fifoGroup = "hot-group"

// Run measures the raw and the relay publishing rates against cfg.Endpoint. It creates its own
// queues and deletes them afterwards.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Events < 0 || cfg.PayloadBytes < 0 || cfg.Concurrency < 0 || cfg.BatchSize < 0 || cfg.RelayConcurrency < 0 || cfg.Rounds < 0 {
		return Result{}, errors.New("sqsbench: config fields must not be negative")
	}
	cfg = cfg.withDefaults()
	res := Result{
		Events: cfg.Events, PayloadBytes: cfg.PayloadBytes, Concurrency: cfg.Concurrency,
		BatchSize: cfg.BatchSize, RelayConcurrency: cfg.RelayConcurrency, Rounds: cfg.Rounds,
		Endpoint: cfg.Endpoint, GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Target: Target, FIFOGroup: cfg.FIFOGroup,
	}

	// One transport, and so one SDK client, for both measurements.
	b := &bench{cfg: cfg}
	if err := b.setup(ctx); err != nil {
		return res, err
	}
	defer b.teardown()

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

// JSON returns r as indented JSON.
func (r Result) JSON() string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

type bench struct {
	cfg    Config
	tr     *sqs.Transport
	client *awssqs.Client
	queues []string
}

func (b *bench) setup(ctx context.Context) error {
	// The transport is built per round (its queue changes) but on this one client, so that
	// connection pool and SDK stack are shared.
	boot, err := sqs.New(ctx, sqs.Config{
		Connection:  sqs.Connection{Endpoint: b.cfg.Endpoint, Region: b.cfg.Region, AccessKeyID: "sqsbench", SecretAccessKey: "sqsbench"},
		QueueURL:    "unused",
		Concurrency: b.cfg.Concurrency,
	})
	if err != nil {
		return err
	}
	b.tr, b.client = boot, boot.Client()
	return nil
}

func (b *bench) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, q := range b.queues {
		_, _ = b.client.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: aws.String(q)})
	}
	_ = b.tr.Close()
}

func (b *bench) newQueue(ctx context.Context, what string) (string, error) {
	var r [4]byte
	_, _ = rand.Read(r[:])
	in := &awssqs.CreateQueueInput{QueueName: aws.String("outbox-bench-" + what + "-" + hex.EncodeToString(r[:]))}
	if b.cfg.FIFOGroup {
		in.QueueName = aws.String(*in.QueueName + ".fifo")
		in.Attributes = map[string]string{"FifoQueue": "true"}
	}
	out, err := b.client.CreateQueue(ctx, in)
	if err != nil {
		return "", fmt.Errorf("sqsbench: create queue at %s: %w", b.cfg.Endpoint, err)
	}
	url := aws.ToString(out.QueueUrl)
	b.queues = append(b.queues, url)
	return url, nil
}

// events returns cfg.Events prepared messages.
func (b *bench) events() ([]*outbox.Message, error) {
	pad := strings.Repeat("x", max(0, b.cfg.PayloadBytes-30))
	msgs := make([]*outbox.Message, b.cfg.Events)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: "BENCH_EVENT", Payload: json.RawMessage(`{"n":` + strconv.Itoa(i) + `,"pad":"` + pad + `"}`)}
		if b.cfg.FIFOGroup {
			msgs[i].Key = fifoGroup
		}
	}
	return msgs, backend.Prepare(context.Background(), msgs, backend.WriteOptions{})
}

// raw publishes the events with SendMessageBatch directly: bodies encoded beforehand, the
// same attribute the transport adds, Concurrency calls in flight. It returns events/s.
func (b *bench) raw(ctx context.Context) (float64, error) {
	url, err := b.newQueue(ctx, "raw")
	if err != nil {
		return 0, err
	}
	msgs, err := b.events()
	if err != nil {
		return 0, err
	}
	var batches [][]types.SendMessageBatchRequestEntry
	for i := 0; i < len(msgs); i += sqs.MaxBatchEntries {
		var entries []types.SendMessageBatchRequestEntry
		for j, m := range msgs[i:min(i+sqs.MaxBatchEntries, len(msgs))] {
			body, err := backend.EncodeEnvelope(nil, m)
			if err != nil {
				return 0, err
			}
			e := types.SendMessageBatchRequestEntry{
				Id:          aws.String(strconv.Itoa(j)),
				MessageBody: aws.String(string(body)),
				MessageAttributes: map[string]types.MessageAttributeValue{
					sqs.AttributeType: {DataType: aws.String("String"), StringValue: aws.String(m.Type)},
				},
			}
			if b.cfg.FIFOGroup {
				e.MessageGroupId, e.MessageDeduplicationId = aws.String(fifoGroup), aws.String(m.ID)
				e.MessageAttributes[sqs.AttributeKey] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(fifoGroup)}
			}
			entries = append(entries, e)
		}
		batches = append(batches, entries)
	}

	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	workers := b.cfg.Concurrency
	if b.cfg.FIFOGroup {
		workers = 1 // one group: a second call in flight could overtake the first
	}
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(batches) {
					return
				}
				out, err := b.client.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: batches[i]},
					func(o *awssqs.Options) { o.Retryer = aws.NopRetryer{} })
				if err == nil && len(out.Failed) > 0 {
					err = fmt.Errorf("%d entries failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
				}
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("sqsbench: raw SendMessageBatch: %w", err) })
					next.Store(int64(len(batches)))
					return
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

// relay publishes the events through an in-memory store, outbox.Relay and the SQS transport on
// the same client, from a full backlog until the store is drained. It returns events/s.
func (b *bench) relay(ctx context.Context) (float64, error) {
	url, err := b.newQueue(ctx, "relay")
	if err != nil {
		return 0, err
	}
	tr, err := sqs.New(ctx, sqs.Config{Connection: sqs.Connection{Client: b.client}, QueueURL: url, Concurrency: b.cfg.Concurrency})
	if err != nil {
		return 0, err
	}
	defer func() { _ = tr.Close() }()
	msgs, err := b.events()
	if err != nil {
		return 0, err
	}
	return benchutil.RelayDrain(ctx, "sqsbench", tr, outbox.Config{BatchSize: b.cfg.BatchSize, Concurrency: b.cfg.RelayConcurrency, Unordered: !b.cfg.FIFOGroup}, msgs)
}
