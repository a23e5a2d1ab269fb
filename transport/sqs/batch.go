package sqs

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/txoutbox/outbox"
)

// batch is one SendMessageBatch call.
type batch struct {
	q       queue
	entries []entry
	// after are the earlier batches to the same FIFO queue that carry a keyed group this batch
	// carries too: this batch is sent only once they are answered, so a Key keeps its order.
	after []*batch
	done  chan struct{}
	// failed maps each keyed FIFO group that had a failure, in this batch or before it, to the
	// ID of the message that failed. Written before done is closed, read after.
	failed map[string]string
}

// pack encodes the messages at idxs, all bound for q, and packs them in order into batches of
// at most MaxBatchEntries entries and MaxBatchBytes bytes. Messages that cannot be encoded fail
// in out; on a FIFO queue they hold back the later messages with their Key.
func (t *Transport) pack(q queue, msgs []*outbox.Message, idxs []int, out *outcome) []*batch {
	var (
		batches []*batch
		cur     *batch
		size    int
		buf     []byte
		held    = map[string]string{} // ordered group -> ID of its message that failed to encode
		last    = map[string]*batch{} // ordered group -> latest batch carrying it
	)
	for _, i := range idxs {
		e, b, err := t.encode(i, msgs[i], q, buf)
		buf = b
		if err != nil {
			out.fail(i, err, false)
			if q.fifo && msgs[i].Key != "" {
				if g := fifoGroup(msgs[i].Key, t.cfg.DefaultGroupID); held[g] == "" {
					held[g] = msgs[i].ID
				}
			}
			continue
		}
		if id := held[e.ordered]; e.ordered != "" && id != "" {
			out.fail(i, heldBack(msgs[i].ID, id, e.ordered), false)
			continue
		}
		if cur == nil || len(cur.entries) == MaxBatchEntries || size+e.size > t.cfg.MaxBatchBytes {
			cur = &batch{q: q, done: make(chan struct{})}
			batches = append(batches, cur)
			size = 0
		}
		if e.ordered != "" {
			if prev := last[e.ordered]; prev != nil && prev != cur && !slices.Contains(cur.after, prev) {
				cur.after = append(cur.after, prev)
			}
			last[e.ordered] = cur
		}
		cur.entries = append(cur.entries, e)
		size += e.size
	}
	return batches
}

func heldBack(id, failedID, group string) error {
	return fmt.Errorf("sqs: message %s held back: message %s of the same FIFO group %q failed before it, and sending this one would overtake it", id, failedID, group)
}

// sendAll sends every batch, concurrently within the transport's Concurrency, and records each
// message's outcome.
//
// Batches that follow no other take their slot here, in order, so the oldest messages go first
// when slots are scarce. A batch that must follow others takes its slot only once they are
// answered: holding one while it waits would idle it.
func (t *Transport) sendAll(ctx context.Context, batches []*batch, out *outcome) {
	var wg sync.WaitGroup
	for _, b := range batches {
		slot := len(b.after) == 0 && t.acquire(ctx)
		if len(batches) == 1 {
			t.send(ctx, b, out, slot)
			return
		}
		wg.Go(func() { t.send(ctx, b, out, slot) })
	}
	wg.Wait()
}

// acquire takes one of the Concurrency slots, or reports false when ctx ends first.
func (t *Transport) acquire(ctx context.Context) bool {
	select {
	case t.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// send makes one SendMessageBatch call, after the batches it must follow. slot says whether
// the call's concurrency slot is already taken; send releases it.
func (t *Transport) send(ctx context.Context, b *batch, out *outcome, slot bool) {
	defer close(b.done)
	defer func() {
		if slot {
			<-t.sem
		}
	}()
	if b.q.fifo {
		b.failed = map[string]string{}
		for _, prev := range b.after {
			<-prev.done // prev is bounded by ctx too, so this wait is
			for g, id := range prev.failed {
				b.failed[g] = id
			}
		}
	}

	entries := make([]types.SendMessageBatchRequestEntry, 0, len(b.entries))
	sent := make([]entry, 0, len(b.entries))
	for _, e := range b.entries {
		if id := b.failed[e.ordered]; e.ordered != "" && id != "" {
			out.fail(e.index, heldBack(out.msgs[e.index].ID, id, e.ordered), false)
			continue
		}
		m := out.msgs[e.index]
		re := types.SendMessageBatchRequestEntry{
			Id:                aws.String(strconv.Itoa(e.index)),
			MessageBody:       aws.String(e.body),
			MessageAttributes: e.attrs,
		}
		if b.q.fifo {
			re.MessageGroupId = aws.String(e.group)
			re.MessageDeduplicationId = aws.String(m.ID)
		}
		entries = append(entries, re)
		sent = append(sent, e)
	}
	if len(entries) == 0 {
		return
	}

	if !slot {
		if slot = t.acquire(ctx); !slot {
			b.failAll(out, sent, classify("publish to "+b.q.url, ctx.Err()))
			return
		}
	}
	res, err := t.client.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: aws.String(b.q.url), Entries: entries}, noRetry)
	<-t.sem
	slot = false
	if err != nil && blamesMessages(err) && len(entries) > 1 {
		// One bad entry refused the whole call: find it by sending each alone, so the others
		// are not taken down with it.
		t.sendEach(ctx, b, entries, sent, out)
		return
	}
	if err != nil {
		b.failAll(out, sent, classify("publish to "+b.q.url, err))
		return
	}

	answered := make(map[int]bool, len(sent))
	for _, s := range res.Successful {
		if i, ok := b.index(aws.ToString(s.Id), sent); ok {
			answered[i] = true
		}
	}
	for _, f := range res.Failed {
		i, ok := b.index(aws.ToString(f.Id), sent)
		if !ok {
			continue
		}
		answered[i] = true
		b.fail(out, i, entryError(b.q.url, f), false)
	}
	for _, e := range sent {
		if !answered[e.index] {
			b.fail(out, e.index, fmt.Errorf("sqs: queue %s: SendMessageBatch answered nothing for message %s", b.q.url, out.msgs[e.index].ID), false)
		}
	}
}

// sendEach sends the entries of a refused call one per call, in order; on a FIFO queue a group
// stops at its first failure.
func (t *Transport) sendEach(ctx context.Context, b *batch, entries []types.SendMessageBatchRequestEntry, sent []entry, out *outcome) {
	for i, re := range entries {
		e := sent[i]
		if id := b.failed[e.ordered]; e.ordered != "" && id != "" {
			out.fail(e.index, heldBack(out.msgs[e.index].ID, id, e.ordered), false)
			continue
		}
		if !t.acquire(ctx) {
			b.fail(out, e.index, classify("publish to "+b.q.url, ctx.Err()), false)
			continue
		}
		res, err := t.client.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: aws.String(b.q.url), Entries: []types.SendMessageBatchRequestEntry{re}}, noRetry)
		<-t.sem
		switch {
		case err != nil:
			b.fail(out, e.index, classify("publish to "+b.q.url, err), false)
		case len(res.Failed) > 0:
			b.fail(out, e.index, entryError(b.q.url, res.Failed[0]), false)
		case len(res.Successful) == 0:
			b.fail(out, e.index, fmt.Errorf("sqs: queue %s: SendMessageBatch answered nothing for message %s", b.q.url, out.msgs[e.index].ID), false)
		}
	}
}

// index maps a batch entry Id back to the message index, accepting only this batch's Ids.
func (b *batch) index(id string, sent []entry) (int, bool) {
	i, err := strconv.Atoi(id)
	if err != nil {
		return 0, false
	}
	for _, e := range sent {
		if e.index == i {
			return i, true
		}
	}
	return 0, false
}

func (b *batch) failAll(out *outcome, sent []entry, err error) {
	for _, e := range sent {
		b.fail(out, e.index, err, true)
	}
}

// fail records a failed message and, on a FIFO queue, holds back the rest of its group.
func (b *batch) fail(out *outcome, i int, err error, wholeCall bool) {
	out.fail(i, err, wholeCall)
	if b.q.fifo {
		for _, e := range b.entries {
			if e.index == i && e.ordered != "" && b.failed[e.ordered] == "" {
				b.failed[e.ordered] = out.msgs[i].ID
			}
		}
	}
}
