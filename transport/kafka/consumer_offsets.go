package kafka

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// settleBatch runs once every record of the poll is settled, before the next poll: it rewinds
// and pauses the partitions whose records were given back, commits what was acked, and lets a
// rebalance proceed. franz-go wants SetOffsets in a group called there, from the polling
// goroutine before AllowRebalance; setting the offset also drops what the client had buffered
// for the partition, so the next records of it start at the given-back one.
func (a *adapter) settleBatch() {
	a.mu.Lock()
	for id, rw := range a.rewinds {
		n := 0 // consecutive failures of the record
		if f, ok := a.fails[id]; ok && f.offset == rw.record.Offset {
			n = f.n
		}
		if rw.failed {
			n++
			a.fails[id] = failure{offset: rw.record.Offset, n: n}
		}
		a.client.SetOffsets(map[string]map[int32]kgo.EpochOffset{
			id.topic: {id.partition: {Epoch: rw.record.LeaderEpoch, Offset: rw.record.Offset}},
		})
		if time.Until(rw.until) > 0 {
			a.client.PauseFetchPartitions(map[string][]int32{id.topic: {id.partition}})
			a.rests[id] = rw.until
		}
		a.log.Info("partition rewound to its failed record; its later records wait",
			zap.String("topic", id.topic), zap.Int32("partition", id.partition), zap.Int64("offset", rw.record.Offset),
			zap.Int("failures", n), zap.Duration("backoff", max(time.Until(rw.until), 0)))
	}
	clear(a.rewinds)
	a.polled = false
	a.mu.Unlock()
	a.commit(func(partitionID) bool { return true })
	a.client.AllowRebalance()
}

// resume resumes the resting partitions whose rest is over and returns when the next one is
// due, if any rests still. Called with mu held.
func (a *adapter) resume() (wake time.Time, ok bool) {
	now := time.Now()
	due := map[string][]int32{}
	for id, until := range a.rests {
		if !until.After(now) {
			due[id.topic] = append(due[id.topic], id.partition)
			delete(a.rests, id)
			continue
		}
		if !ok || until.Before(wake) {
			wake, ok = until, true
		}
	}
	if len(due) > 0 {
		a.client.ResumeFetchPartitions(due)
	}
	return wake, ok
}

// commit commits the pending offsets of the partitions match selects: for each, the offset
// after its last record settled past. A failed commit stays pending and is tried again after
// RetryBackoff, when the partition is revoked, and on Close, so a handled record is committed
// even if no later one arrives.
func (a *adapter) commit(match func(partitionID) bool) {
	a.commitMu.Lock()
	defer a.commitMu.Unlock()
	a.mu.Lock()
	var last []*kgo.Record
	for id, r := range a.pending {
		if match(id) {
			last = append(last, r)
		}
	}
	a.mu.Unlock()
	if len(last) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	err := a.client.CommitRecords(ctx, last...)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.retryCommit = time.Now().Add(a.cfg.RetryBackoff)
		a.log.Warn("commit failed; it is tried again, and the records are delivered again if it never succeeds",
			zap.Int("partitions", len(last)), zap.Error(fmt.Errorf("kafka consumer: commit: %w", err)))
		return
	}
	for _, r := range last {
		if id := (partitionID{r.Topic, r.Partition}); a.pending[id] == r {
			delete(a.pending, id)
		}
	}
	if len(a.pending) == 0 {
		a.retryCommit = time.Time{}
	}
}

// retryDue returns when a failed commit is to be tried again; zero when none failed.
func (a *adapter) retryDue() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.retryCommit
}

// revoked commits the pending offsets of partitions the group takes away, before another
// member gets them, and forgets them. It runs on the client's group goroutine, only while no
// poll's records are out (BlockRebalanceOnPoll), and in Close.
func (a *adapter) revoked(m map[string][]int32) {
	gone := in(m)
	a.commit(gone)
	a.forget(gone)
}

// lost forgets the pending offsets of partitions lost without a revocation (the session
// expired): committing them would be refused, and their records are delivered again.
func (a *adapter) lost(m map[string][]int32) { a.forget(in(m)) }

// forget drops what the adapter holds of partitions no longer assigned: their buffered
// records, pending offsets and failure counts. Their rests stay, so that a partition paused
// here and assigned again is resumed.
func (a *adapter) forget(gone func(partitionID) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dropBatch(gone)
	for id := range a.pending {
		if gone(id) {
			delete(a.pending, id) // committed, or no longer ours to commit
		}
	}
	for id := range a.fails {
		if gone(id) {
			delete(a.fails, id)
		}
	}
	for id := range a.rewinds {
		if gone(id) {
			delete(a.rewinds, id)
		}
	}
}

// in returns whether a partition is in m.
func in(m map[string][]int32) func(partitionID) bool {
	return func(id partitionID) bool { return slices.Contains(m[id.topic], id.partition) }
}
