package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
)

// partitionID names one partition of one topic.
type partitionID struct {
	topic     string
	partition int32
}

// rest is a partition paused after a failure: when it resumes, and how many failures in a row
// it has had (the backoff doubles with them).
type rest struct {
	until    time.Time
	failures int
}

// outcome is what handling one partition's records of a poll gave: the last record handled
// (or skipped as malformed), and the record that failed, if one did.
type outcome struct {
	id     partitionID
	last   *kgo.Record
	failed *kgo.Record
}

// loop polls, hands each poll's records to the handlers (one goroutine per partition, at most
// Concurrency at once), commits what was handled, rewinds what failed, and only then lets a
// rebalance proceed (BlockRebalanceOnPoll). It ends when pollCtx does, after committing, and
// closes the client, which leaves the group.
func (c *Consumer) loop(pollCtx, workCtx context.Context) {
	defer close(c.done)
	cl := c.client
	defer cl.Close()
	defer cl.AllowRebalance()
	defer c.commit(nil) // what failed to commit before
	rests := map[partitionID]*rest{}
	failures := map[partitionID]int{} // consecutive failures of partitions not resting now
	backoff := time.Duration(0)
	for {
		ctx, cancel := pollCtx, context.CancelFunc(func() {})
		wake, ok := c.resume(rests, failures)
		if c.hasPending() {
			// A commit failed: try it again soon, whether or not records arrive.
			if retry := time.Now().Add(c.cfg.RetryBackoff); !ok || retry.Before(wake) {
				wake, ok = retry, true
			}
		}
		if ok {
			ctx, cancel = context.WithDeadline(pollCtx, wake)
		}
		fs := cl.PollRecords(ctx, c.cfg.MaxPollRecords)
		cancel()
		if fs.IsClientClosed() || pollCtx.Err() != nil {
			return // records taken by this poll are not handled, so not committed either
		}
		var fetchErr error
		fs.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return // the wait for a resting partition ended
			}
			c.stats.fetchErrors.Add(1)
			fetchErr = err
			c.log.Warn("fetch failed; the client retries", zap.String("topic", topic), zap.Int32("partition", p),
				zap.Error(fmt.Errorf("kafka consumer: fetch: %w", err)))
		})
		outcomes := c.handlePoll(workCtx, fs)
		c.commit(outcomes)
		for _, o := range outcomes {
			if o.failed == nil {
				delete(failures, o.id)
				continue
			}
			if workCtx.Err() != nil {
				continue // stopping: the record stays uncommitted, which is all a rewind would do
			}
			c.rewind(o, rests, failures)
		}
		cl.AllowRebalance()
		if fetchErr != nil && fs.NumRecords() == 0 {
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			select {
			case <-time.After(backoff):
			case <-pollCtx.Done():
				return
			}
		} else {
			backoff = 0
		}
	}
}

// resume resumes the resting partitions whose backoff is over and returns when the next one
// is due, if any rests still.
func (c *Consumer) resume(rests map[partitionID]*rest, failures map[partitionID]int) (wake time.Time, ok bool) {
	now := time.Now()
	due := map[string][]int32{}
	for id, r := range rests {
		if !r.until.After(now) {
			due[id.topic] = append(due[id.topic], id.partition)
			failures[id] = r.failures
			delete(rests, id)
			continue
		}
		if !ok || r.until.Before(wake) {
			wake, ok = r.until, true
		}
	}
	if len(due) > 0 {
		c.client.ResumeFetchPartitions(due)
		c.stats.paused.Store(int64(len(rests)))
	}
	return wake, ok
}

// rewind sets o's partition back to its failed record and pauses it for the backoff. It runs
// between polls, before the rebalance is allowed, as franz-go requires of SetOffsets in a
// group; setting the offset also drops what the client had buffered for the partition, so
// the next records of it handed to a handler start at the failed one.
func (c *Consumer) rewind(o outcome, rests map[partitionID]*rest, failures map[partitionID]int) {
	n := failures[o.id] + 1
	delete(failures, o.id)
	wait := c.cfg.RetryBackoff
	for i := 1; i < n && wait < c.cfg.MaxRetryBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, c.cfg.MaxRetryBackoff)
	c.client.SetOffsets(map[string]map[int32]kgo.EpochOffset{
		o.id.topic: {o.id.partition: {Epoch: o.failed.LeaderEpoch, Offset: o.failed.Offset}},
	})
	c.client.PauseFetchPartitions(map[string][]int32{o.id.topic: {o.id.partition}})
	rests[o.id] = &rest{until: time.Now().Add(wait), failures: n}
	c.stats.paused.Store(int64(len(rests)))
	c.log.Info("partition rewound to its failed record; its later records wait",
		zap.String("topic", o.id.topic), zap.Int32("partition", o.id.partition),
		zap.Int64("offset", o.failed.Offset), zap.Int("failures", n), zap.Duration("backoff", wait))
}

// handlePoll handles the records of one poll, each partition's in order on a goroutine of its
// own, at most Concurrency at once, and returns one outcome per partition.
func (c *Consumer) handlePoll(ctx context.Context, fs kgo.Fetches) []outcome {
	var parts []kgo.FetchTopicPartition
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 {
			parts = append(parts, p)
		}
	})
	outcomes := make([]outcome, len(parts))
	slots := make(chan struct{}, c.cfg.Concurrency)
	var wg sync.WaitGroup
	for i, p := range parts {
		c.stats.received.Add(int64(len(p.Records)))
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			outcomes[i] = c.handlePartition(ctx, partitionID{p.Topic, p.Partition}, p.Records)
		})
	}
	wg.Wait()
	return outcomes
}

// handlePartition handles records (one partition's, in offset order) until the first one
// whose handler fails: the later ones must not overtake it.
func (c *Consumer) handlePartition(ctx context.Context, id partitionID, records []*kgo.Record) outcome {
	o := outcome{id: id}
	for _, r := range records {
		if !c.process(ctx, r) {
			o.failed = r
			return o
		}
		o.last = r
	}
	return o
}

// process handles one record and reports whether it may be committed past.
func (c *Consumer) process(ctx context.Context, r *kgo.Record) bool {
	log := c.log.With(zap.String("topic", r.Topic), zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset))
	msg, err := decodeRecord(r, c.cfg.RawPayload)
	if err != nil {
		c.stats.malformed.Add(1)
		log.Error("malformed record skipped", zap.Error(err))
		return true
	}
	if ctx.Err() != nil {
		return false // stopping: leave it uncommitted
	}
	c.stats.inFlight.Add(1)
	defer c.stats.inFlight.Add(-1)
	hctx, cancel := context.WithCancel(ctx)
	if c.cfg.HandlerTimeout > 0 {
		hctx, cancel = context.WithTimeout(ctx, c.cfg.HandlerTimeout)
	}
	err = c.call(hctx, msg)
	cancel()
	if err != nil {
		c.stats.failed.Add(1)
		log.Warn("handler failed; the partition is rewound to this record", zap.String("id", msg.ID), zap.String("type", msg.Type), zap.Error(err))
		return false
	}
	c.stats.handled.Add(1)
	return true
}

// call runs the handler, turning a panic into an error so one bad record cannot stop the
// consumer.
func (c *Consumer) call(ctx context.Context, m *outbox.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("kafka consumer: handler panicked: %v", r)
		}
	}()
	return c.handle(ctx, m)
}

// commit records the last record handled (or skipped) of each outcome's partition as pending
// and commits every pending offset: the offset after that record. A failed commit stays
// pending and is tried again after the next poll, when the partition is revoked, and when the
// consumer stops, so a handled record is committed even if no later one arrives.
func (c *Consumer) commit(outcomes []outcome) {
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	for _, o := range outcomes {
		if o.last != nil {
			c.pending[o.id] = o.last
		}
	}
	c.commitPending(func(partitionID) bool { return true })
}

// hasPending reports whether a handled record waits for its commit.
func (c *Consumer) hasPending() bool {
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	return len(c.pending) > 0
}

// commitPending commits the pending offsets of the partitions match selects. It is called
// with pendingMu held.
func (c *Consumer) commitPending(match func(partitionID) bool) {
	var last []*kgo.Record
	for id, r := range c.pending {
		if match(id) {
			last = append(last, r)
		}
	}
	if len(last) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	if err := c.client.CommitRecords(ctx, last...); err != nil {
		c.stats.commitErrors.Add(1)
		c.log.Warn("commit failed; it is tried again, and the records are delivered again if it never succeeds",
			zap.Int("partitions", len(last)), zap.Error(fmt.Errorf("kafka consumer: commit: %w", err)))
		return
	}
	c.stats.commits.Add(1)
	for _, r := range last {
		delete(c.pending, partitionID{r.Topic, r.Partition})
	}
}

// revoked commits the pending offsets of partitions the group takes away, before another
// member gets them. It runs on the client's group goroutine, while the poll loop waits.
func (c *Consumer) revoked(m map[string][]int32) {
	c.stats.partitions.Add(-count(m))
	gone := in(m)
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	c.commitPending(gone)
	for id := range c.pending {
		if gone(id) {
			delete(c.pending, id) // committed, or no longer ours to commit
		}
	}
}

// lost forgets the pending offsets of partitions lost without a revocation (the session
// expired): committing them would be refused, and their records are delivered again.
func (c *Consumer) lost(m map[string][]int32) {
	c.stats.partitions.Add(-count(m))
	gone := in(m)
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	for id := range c.pending {
		if gone(id) {
			delete(c.pending, id)
		}
	}
}

// in returns whether a partition is in m.
func in(m map[string][]int32) func(partitionID) bool {
	return func(id partitionID) bool { return slices.Contains(m[id.topic], id.partition) }
}
