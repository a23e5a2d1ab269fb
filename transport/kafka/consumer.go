package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
	"go.uber.org/zap"
)

// commitTimeout bounds one offset commit. Commits are not cancelled by Stop: the work they
// record is done.
const commitTimeout = 10 * time.Second

// Consumer reads Topics as a member of a consumer group and hands each record, decoded, to the
// handler, on the consumer runtime of package consume. The records of one partition are
// handled one after the other in offset order, so the per-key order the Transport keeps on a
// partition reaches the handler; up to Concurrency partitions are handled at once.
//
// Acknowledging is committing an offset: after the records of a poll are settled, the
// consumer commits, for each partition, the offset after the last record whose handler
// returned nil (autocommit is off; nothing is committed before its handler succeeded). A
// commit that fails is tried again after RetryBackoff, when the partition is revoked, and on
// Stop. When a handler fails (returns an error, panics, or its context ends), that record and
// every later one of its partition are not committed: the partition is rewound to the failed
// record and paused for RetryBackoff (doubling per consecutive failure, up to
// MaxRetryBackoff), then fetched again from there. The later records of that partition wait
// meanwhile, however long the failure lasts: that is the price of the order. Other partitions
// go on. The consumer has no dead-letter topic of its own: a record that can never be handled
// stops its partition until the handler accepts it (a handler may write it elsewhere and
// return nil).
//
// A record whose value or headers cannot be decoded is logged at error level, counted as
// Malformed and Rejected, and committed past: no retry can decode it, and waiting on it would
// stop its partition for good.
//
// A rebalance waits until the records of the current poll are settled and committed, so a
// partition moves to another member only at a committed offset; keep handlers (HandlerTimeout)
// well below the group's rebalance timeout (60s by default). Delivery is at least once: a
// failed commit, a crash, or a member that lost its partitions makes records arrive again.
// Wrap the handler's work in an inbox's Handle (store/postgres/inbox, store/sqlite/inbox,
// store/mongo/inbox) for an exactly-once effect.
type Consumer struct {
	*consume.Consumer
	a *adapter
}

// ConsumerStats is a snapshot of a consumer's counters: Acked counts records whose offset was
// recorded for the next commit, Requeued the records given back (a failed one rewinds its
// partition), Rejected the malformed records committed past, ReceiveErrors the polls that
// failed. A failed commit is logged; its records are delivered again if it never succeeds.
type ConsumerStats = consume.Stats

// NewConsumer validates cfg and returns a consumer that calls cfg.Handler for each record. It
// connects to nothing; Start (or Run) joins the group. The handler must be safe for concurrent
// use when Concurrency is above 1 (it is called for several partitions at once). ctx is unused:
// the client is built by Start.
func NewConsumer(_ context.Context, cfg ConsumerConfig) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	a := newAdapter(cfg)
	// A poll's records are all handed to the runtime (their partitions, Concurrency at a
	// time), so it has a slot for each; one poller, since a group member polls from one place.
	slots := max(cfg.MaxPollRecords, cfg.Concurrency)
	c, err := consume.New(a, consume.Config{
		Name: "kafka consumer", Handler: cfg.Handler, RawPayload: cfg.RawPayload,
		Concurrency: slots, ReceiveBatch: slots, Pollers: 1,
		HandlerTimeout: cfg.HandlerTimeout, Backoff: cfg.backoff(),
		StopTimeout: DefaultConsumerStopTimeout, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &Consumer{Consumer: c, a: a}, nil
}

// partitionID names one partition of one topic.
type partitionID struct {
	topic     string
	partition int32
}

func (p partitionID) String() string { return p.topic + "/" + strconv.Itoa(int(p.partition)) }

// run is the records of one partition handed to the runtime together, settled one by one.
type run struct {
	id     partitionID
	left   int  // records not settled yet
	failed bool // a record of it was given back: the partition is rewound to it
}

// rewind is a partition to set back to a record that was given back, resting until a time.
type rewind struct {
	record *kgo.Record
	until  time.Time
	failed bool // a handler failed: counts as a failure of the record (its backoff grows)
}

// failure counts the consecutive failures of a partition's record, which pick its Attempt.
type failure struct {
	offset int64
	n      int
}

// adapter is the runtime's view of the group. Receive polls one batch of records at a time
// and hands them out, a partition's records only after its previous run was settled. Once
// every record of the batch is settled, Receive rewinds the partitions that failed, commits
// what was acked and allows the rebalance the poll blocked (BlockRebalanceOnPoll), then polls
// again. Settlers only record what happened, under mu.
type adapter struct {
	cfg ConsumerConfig
	log *zap.Logger

	client *kgo.Client

	mu      sync.Mutex
	wake    chan struct{}                 // a run was settled: Receive looks again
	batch   map[partitionID][]*kgo.Record // records of the current poll not handed out yet
	order   []partitionID                 // the batch's partitions, in the poll's order
	busy    map[partitionID]*run          // partitions with a run not settled yet
	open    int                           // records handed out, not settled yet
	polled  bool                          // a poll's records are out: the rebalance waits
	pending map[partitionID]*kgo.Record   // per partition, the last record settled past, not committed
	rewinds map[partitionID]rewind        // to apply once the batch is settled
	rests   map[partitionID]time.Time     // paused partitions, until when
	fails   map[partitionID]failure

	commitMu    sync.Mutex // one commit at a time
	retryCommit time.Time  // when a failed commit is tried again; zero: none failed
}

func newAdapter(cfg ConsumerConfig) *adapter {
	return &adapter{
		cfg: cfg, log: cfg.Logger.With(zap.String("component", "kafka consumer"), zap.String("group", cfg.Group)),
		wake: make(chan struct{}, 1), batch: map[partitionID][]*kgo.Record{}, busy: map[partitionID]*run{},
		pending: map[partitionID]*kgo.Record{}, rewinds: map[partitionID]rewind{}, rests: map[partitionID]time.Time{},
		fails: map[partitionID]failure{},
	}
}

// Open builds the client and checks that a broker answers within ctx; the group is joined by
// the first poll.
func (a *adapter) Open(ctx context.Context) error {
	opts := append(consumerOptions(a.cfg),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { a.revoked(m) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { a.lost(m) }),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return outbox.Unavailable(err)
	}
	a.client = cl
	a.log.Info("joining the group", zap.Strings("topics", a.cfg.Topics), zap.Int("concurrency", a.cfg.Concurrency))
	return nil
}

// Close commits what was settled, lets the pending rebalance (if any) go, and closes the
// client, which leaves the group. Records of the batch not handed out are dropped: they are
// not committed, so the group delivers them again.
func (a *adapter) Close(context.Context) error {
	if a.client == nil {
		return nil
	}
	a.mu.Lock()
	a.dropBatch(func(partitionID) bool { return true })
	a.mu.Unlock()
	a.commit(func(partitionID) bool { return true })
	a.client.AllowRebalance()
	a.client.Close()
	return nil
}

// Receive hands out records of the current batch, polling a new one once the last is settled.
func (a *adapter) Receive(ctx context.Context, max int) ([]consume.Delivery, error) {
	for {
		a.mu.Lock()
		ds := a.take(max)
		done := a.polled && a.open == 0 && len(a.order) == 0
		polled := a.polled
		a.mu.Unlock()
		switch {
		case len(ds) > 0:
			return ds, nil
		case done:
			a.settleBatch()
			continue
		case polled: // the batch's records left wait for their partitions' runs
			select {
			case <-a.wake:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if err := a.poll(ctx); ctx.Err() != nil {
			return nil, ctx.Err()
		} else if err != nil {
			return nil, err
		}
	}
}

// take hands out up to max records of the batch, whole runs of the partitions that have none
// out, at most Concurrency partitions at once. Called with mu held.
func (a *adapter) take(max int) []consume.Delivery {
	var ds []consume.Delivery
	kept := a.order[:0]
	for _, id := range a.order {
		records := a.batch[id]
		if _, out := a.busy[id]; out || len(ds) >= max || len(a.busy) >= a.cfg.Concurrency {
			kept = append(kept, id)
			continue
		}
		n := min(len(records), max-len(ds))
		r := &run{id: id, left: n}
		a.busy[id] = r
		a.open += n
		for _, rec := range records[:n] {
			ds = append(ds, a.delivery(rec, r))
		}
		if n < len(records) {
			a.batch[id] = records[n:]
			kept = append(kept, id)
		} else {
			delete(a.batch, id)
		}
	}
	clear(a.order[len(kept):])
	a.order = kept
	return ds
}

// delivery turns a record into the runtime's: its headers, the record key as outbox.key, the
// partition as the run's group, and the attempt from the partition's consecutive failures.
func (a *adapter) delivery(r *kgo.Record, run *run) consume.Delivery {
	d := consume.Delivery{
		Body: r.Value, Group: run.id.String(), Ref: run.id.String() + "@" + strconv.FormatInt(r.Offset, 10),
		Attempt: 1, Settler: &settler{a: a, record: r, run: run},
	}
	if f, ok := a.fails[run.id]; ok && f.offset == r.Offset {
		d.Attempt = f.n + 1
	}
	if len(r.Headers) > 0 || len(r.Key) > 0 {
		d.Headers = make(map[string]string, len(r.Headers)+1)
	}
	for _, h := range r.Headers {
		if h.Key == HeaderKey && len(r.Key) > 0 && string(h.Value) != string(r.Key) {
			d.Err = fmt.Errorf("record key %q differs from the %s header %q", r.Key, HeaderKey, h.Value)
		}
		d.Headers[h.Key] = string(h.Value)
	}
	if len(r.Key) > 0 {
		d.Headers[HeaderKey] = string(r.Key)
	}
	return d
}

// poll resumes the partitions whose rest is over and polls once, waiting at most until the
// next one is due or a failed commit is to be tried again.
func (a *adapter) poll(ctx context.Context) error {
	a.mu.Lock()
	wake, ok := a.resume()
	a.mu.Unlock()
	if retry := a.retryDue(); !retry.IsZero() {
		if !retry.After(time.Now()) {
			a.commit(func(partitionID) bool { return true })
		} else if !ok || retry.Before(wake) {
			wake, ok = retry, true
		}
	}
	pctx, cancel := ctx, context.CancelFunc(func() {})
	if ok {
		pctx, cancel = context.WithDeadline(ctx, wake)
	}
	fs := a.client.PollRecords(pctx, a.cfg.MaxPollRecords)
	cancel()
	if fs.IsClientClosed() {
		return errors.New("client closed")
	}
	var fetchErr error
	fs.EachError(func(topic string, p int32, err error) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return // the wait for a resting partition ended, or the consumer stops
		}
		fetchErr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
		a.log.Warn("fetch failed; the client retries", zap.Error(fetchErr))
	})
	a.mu.Lock()
	defer a.mu.Unlock()
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		id := partitionID{p.Topic, p.Partition}
		if _, ok := a.batch[id]; !ok {
			a.order = append(a.order, id)
		}
		a.batch[id] = append(a.batch[id], p.Records...)
	})
	if len(a.order) > 0 {
		a.polled = true
		return nil
	}
	a.client.AllowRebalance()
	return fetchErr
}

// settler settles one record of a run.
type settler struct {
	a      *adapter
	record *kgo.Record
	run    *run
}

// Ack records the offset after the record for the next commit.
func (s *settler) Ack(context.Context) error {
	s.a.settled(s, false, 0, nil)
	return nil
}

// Nack of a run's first record given back rewinds its partition to it, after delay, once the
// batch is settled, and drops the partition's records of the batch not handed out yet; the
// run's later Nacks are no-ops. A Nack because the consumer stops rewinds nothing: the record
// is not committed, so the group delivers it again.
func (s *settler) Nack(_ context.Context, delay time.Duration, cause error) error {
	s.a.settled(s, true, delay, cause)
	return nil
}

// Reject commits past a malformed record, as an Ack does.
func (s *settler) Reject(context.Context, error) error {
	s.a.settled(s, false, 0, nil)
	return nil
}

func (a *adapter) settled(s *settler, nack bool, delay time.Duration, cause error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, id := s.run, s.run.id
	switch {
	case !nack && !r.failed:
		a.pending[id] = s.record
		if f, ok := a.fails[id]; ok && f.offset <= s.record.Offset {
			delete(a.fails, id)
		}
	case nack && !r.failed:
		r.failed = true
		a.dropBatch(func(p partitionID) bool { return p == id })
		if !errors.Is(cause, consume.ErrStopped) {
			// A Nack without delay gives back a record that was not handled (one after a
			// malformed record of its run): it is fetched again at once, and its failures
			// do not grow.
			a.rewinds[id] = rewind{record: s.record, until: time.Now().Add(delay), failed: delay > 0}
		}
	}
	a.open--
	if r.left--; r.left == 0 {
		delete(a.busy, id)
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// dropBatch drops the batch's records of the partitions match selects. Called with mu held.
func (a *adapter) dropBatch(match func(partitionID) bool) {
	kept := a.order[:0]
	for _, id := range a.order {
		if match(id) {
			delete(a.batch, id)
			continue
		}
		kept = append(kept, id)
	}
	clear(a.order[len(kept):])
	a.order = kept
}
