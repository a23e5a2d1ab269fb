package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
)

// ErrConsumerStarted is returned by Start on a consumer that was started before: a consumer
// runs once; make a new one to consume again.
var ErrConsumerStarted = errors.New("kafka consumer: already started")

// commitTimeout bounds one offset commit. Commits are not cancelled by Stop: the work they
// record is done.
const commitTimeout = 10 * time.Second

// Consumer reads Topics as a member of a consumer group and hands each record, decoded, to a
// handler. The records of one partition are handled one after the other in offset order, so
// the per-key order the Transport keeps on a partition reaches the handler; up to Concurrency
// partitions are handled at once.
//
// Acknowledging is committing an offset: after the records of a poll are handled, the
// consumer commits, for each partition, the offset after the last record whose handler
// returned nil (autocommit is off; nothing is committed before its handler succeeded). A
// commit that fails is tried again after RetryBackoff, when the partition is revoked, and on
// Stop. When a
// handler fails (returns an error, panics, or its context ends), that record and every later
// one of its partition are not committed: the partition is rewound to the failed record and
// paused for RetryBackoff (doubling per consecutive failure, up to MaxRetryBackoff), then
// fetched again from there. The later records of that partition wait meanwhile, however long
// the failure lasts: that is the price of the order. Other partitions go on. The consumer has
// no dead-letter topic of its own: a record that can never be handled stops its partition
// until the handler accepts it (a handler may write it elsewhere and return nil).
//
// A record whose value or headers cannot be decoded is logged at error level, counted as
// Malformed and committed past: no retry can decode it, and waiting on it would stop its
// partition for good.
//
// A rebalance waits until the records of the current poll are handled and committed, so a
// partition moves to another member only at a committed offset; keep handlers (HandlerTimeout)
// well below the group's rebalance timeout (60s by default). Delivery is at least once: a
// failed commit, a crash, or a member that lost its partitions makes records arrive again.
// Wrap the handler's work in an inbox's Handle (store/postgres/inbox, store/sqlite/inbox,
// store/mongo/inbox) for an exactly-once effect.
type Consumer struct {
	cfg    ConsumerConfig
	handle func(ctx context.Context, m *outbox.Message) error
	log    *zap.Logger

	mu       sync.Mutex
	started  bool
	client   *kgo.Client
	stopPoll context.CancelFunc
	stopWork context.CancelFunc
	done     chan struct{} // closed when the poll loop has committed, left the group and returned

	// pending holds, per partition, the last record handled and not yet committed.
	pendingMu sync.Mutex
	pending   map[partitionID]*kgo.Record

	stats consumerCounters
}

type consumerCounters struct {
	received, handled, failed, malformed, commits, commitErrors, fetchErrors, inFlight, partitions, paused atomic.Int64
}

// ConsumerStats is a snapshot of a consumer's counters since it started.
type ConsumerStats struct {
	// Received counts records taken from polls, the ones fetched again after a failure
	// included.
	Received int64
	// Handled counts handler calls that returned nil.
	Handled int64
	// Failed counts handler calls that returned an error, panicked or timed out; each rewound
	// its partition.
	Failed int64
	// Malformed counts records that could not be decoded; they were skipped.
	Malformed int64
	// Commits counts successful offset commits; CommitErrors the failed ones (their records
	// are delivered again).
	Commits, CommitErrors int64
	// FetchErrors counts errors polls reported.
	FetchErrors int64
	// InFlight is how many handlers run now.
	InFlight int64
	// Partitions is how many partitions the group assigns to this consumer now.
	Partitions int64
	// Paused is how many partitions rest now after a failure.
	Paused int64
}

// NewConsumer validates cfg and returns a consumer that calls handle for each record. It
// connects to nothing; Start (or Run) joins the group. handle must be safe for concurrent use
// when Concurrency is above 1 (it is called for several partitions at once).
func NewConsumer(cfg ConsumerConfig, handle func(ctx context.Context, m *outbox.Message) error) (*Consumer, error) {
	if handle == nil {
		return nil, &outbox.ConfigError{Component: "kafka consumer", Field: "handle", Problem: "is nil"}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Consumer{
		cfg: cfg, handle: handle,
		log:     cfg.Logger.With(zap.String("component", "kafka consumer"), zap.String("group", cfg.Group)),
		done:    make(chan struct{}),
		pending: map[partitionID]*kgo.Record{},
	}, nil
}

// Start connects, checks that a broker answers within ctx, and starts consuming in the
// background; it does not block on records. ctx bounds only that check.
func (c *Consumer) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return ErrConsumerStarted
	}
	opts := append(consumerOptions(c.cfg),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { c.stats.partitions.Add(count(m)) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { c.revoked(m) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { c.lost(m) }),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka consumer: start: %w", err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return fmt.Errorf("kafka consumer: start: %w", outbox.Unavailable(err))
	}
	c.started, c.client = true, cl
	pollCtx, stopPoll := context.WithCancel(context.Background())
	workCtx, stopWork := context.WithCancel(context.Background())
	c.stopPoll, c.stopWork = stopPoll, stopWork
	go c.loop(pollCtx, workCtx)
	c.log.Info("consuming", zap.Strings("topics", c.cfg.Topics), zap.Int("concurrency", c.cfg.Concurrency))
	return nil
}

func count(m map[string][]int32) int64 {
	n := 0
	for _, ps := range m {
		n += len(ps)
	}
	return int64(n)
}

// Stop stops polling, waits for the handlers in flight, commits what they handled and leaves
// the group. When ctx ends first, it cancels the handlers' contexts (their records are not
// committed, so they are delivered again) and returns ctx's error without waiting further; a
// later Stop waits again. Stop on a consumer never started returns nil.
func (c *Consumer) Stop(ctx context.Context) error {
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if !started {
		return nil
	}
	c.stopPoll()
	select {
	case <-c.done:
		c.stopWork()
		return nil
	case <-ctx.Done():
		c.stopWork()
		return fmt.Errorf("kafka consumer: stop: handlers still running: %w", ctx.Err())
	}
}

// Run starts the consumer and consumes until ctx ends, then stops it, waiting up to
// DefaultConsumerStopTimeout for the handlers in flight. It returns nil after a clean stop.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), DefaultConsumerStopTimeout)
	defer cancel()
	return c.Stop(stopCtx)
}

// Stats returns a snapshot of the counters.
func (c *Consumer) Stats() ConsumerStats {
	s := &c.stats
	return ConsumerStats{
		Received: s.received.Load(), Handled: s.handled.Load(), Failed: s.failed.Load(), Malformed: s.malformed.Load(),
		Commits: s.commits.Load(), CommitErrors: s.commitErrors.Load(), FetchErrors: s.fetchErrors.Load(),
		InFlight: s.inFlight.Load(), Partitions: s.partitions.Load(), Paused: s.paused.Load(),
	}
}
