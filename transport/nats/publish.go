package nats

import (
	"context"
	"fmt"
	"sync"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
)

// Publish sends msgs to JetStream with Nats-Msg-Id = ID and returns once every message's
// PubAck came, failed or timed out (AckTimeout), or ctx ended. It returns nil when the stream
// stored every message (a PubAck reporting a duplicate counts as stored: see Stats); a
// *outbox.BatchError naming the messages that failed when some did; or, when every message
// failed the same way, that error. Failures are marked as the package documentation
// describes: outbox.Permanent for what no retry fixes, outbox.Unavailable for outages.
//
// Messages are pipelined on the one connection: up to MaxPending PubAcks are awaited at
// once across all calls. With KeepKeyOrder, a Key's messages instead go one at a time, each
// after the previous one's PubAck, and stop at the Key's first failure.
func (t *Transport) Publish(ctx context.Context, msgs []*outbox.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed() {
		return fmt.Errorf("nats: publish: %w", outbox.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: publish: %w", err)
	}
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("nats: publish: message %d is nil", i)
		}
	}
	if !t.nc.IsConnected() {
		// Fail fast: a publish now would wait for nothing, or fill a reconnect buffer.
		return outbox.Unavailable(fmt.Errorf("nats: publish: not connected to a server (connection %s)", t.nc.Status()))
	}
	maxBytes := int(t.nc.MaxPayload())
	if t.cfg.MaxMessageBytes > 0 && t.cfg.MaxMessageBytes < maxBytes {
		maxBytes = t.cfg.MaxMessageBytes
	}

	p := &publishing{t: t, msgs: msgs, ready: make([]*natsgo.Msg, len(msgs)), out: newOutcome(msgs), maxBytes: maxBytes}
	if !t.cfg.KeepKeyOrder {
		all := make([]int, len(msgs))
		for i := range all {
			all[i] = i
		}
		p.pipelined(ctx, all)
		return p.out.err()
	}
	// One run per Key of several messages, in the order of the slice. Messages without a Key
	// promise no order, and a Key with one message in the call has no order to keep within
	// it: those are pipelined together.
	runs := map[string][]int{}
	var keys []string
	for i, m := range msgs {
		if m.Key == "" {
			continue
		}
		if _, seen := runs[m.Key]; !seen {
			keys = append(keys, m.Key)
		}
		runs[m.Key] = append(runs[m.Key], i)
	}
	var flat []int
	for i, m := range msgs {
		if m.Key == "" || len(runs[m.Key]) == 1 {
			flat = append(flat, i)
		}
	}
	var wg sync.WaitGroup
	for _, k := range keys {
		if len(runs[k]) > 1 {
			wg.Go(func() { p.inOrder(ctx, runs[k]) })
		}
	}
	p.pipelined(ctx, flat)
	wg.Wait()
	return p.out.err()
}

// publishing is one Publish call's state.
type publishing struct {
	t        *Transport
	msgs     []*outbox.Message
	ready    []*natsgo.Msg // each message as sent, once encoded
	out      *outcome
	maxBytes int
}

// slab returns one buffer for the bodies of idxs, so a run of messages costs one allocation
// rather than one each. Bodies are cut from it and never overwritten: nats.go may hold a
// message until its PubAck.
func (p *publishing) slab(idxs []int) []byte {
	n := 0
	for _, i := range idxs {
		n += len(p.msgs[i].Payload) + len(p.msgs[i].Result) + len(p.msgs[i].ID) + len(p.msgs[i].Type) + 96
	}
	return make([]byte, 0, n)
}

// send encodes message i and publishes it without waiting for its PubAck. A nil future means
// it failed (recorded), or, with a non-nil error, that it was not sent because ctx ended or
// the transport closed.
func (p *publishing) send(ctx context.Context, i int, slab *[]byte) (jetstream.PubAckFuture, error) {
	m := p.msgs[i]
	subject, err := p.t.router.subject(m)
	if err == nil {
		p.ready[i], err = p.t.encode(m, subject, p.maxBytes, slab)
	}
	if err != nil {
		p.out.fail(i, err)
		return nil, nil
	}
	if err := p.t.acquire(ctx); err != nil {
		return nil, err
	}
	f, err := p.t.js.PublishMsgAsync(p.ready[i], publishOpts...)
	if err != nil {
		p.t.release() // nats.go calls no handler for a publish it refused
		p.out.fail(i, classify(subject, err))
		return nil, nil
	}
	return f, nil
}

// wait records the outcome of message i's future, waiting until it resolves or ctx ends.
// It reports whether the message was stored.
func (p *publishing) wait(ctx context.Context, i int, f jetstream.PubAckFuture) bool {
	var gaveUp error
	select {
	case ack := <-f.Ok():
		p.t.acked(p.msgs[i], ack)
		return true
	case err := <-f.Err():
		p.out.fail(i, classify(p.ready[i].Subject, err))
		return false
	case <-ctx.Done():
		gaveUp = ctx.Err()
	case <-p.t.done:
		gaveUp = outbox.ErrClosed
	}
	// A PubAck that came as the wait ended still counts: reporting a stored message failed
	// would only cause a republish.
	select {
	case ack := <-f.Ok():
		p.t.acked(p.msgs[i], ack)
		return true
	default:
	}
	p.out.fail(i, fmt.Errorf("nats: publish to %s: no PubAck yet (the stream may have stored it): %w", p.ready[i].Subject, gaveUp))
	return false
}

// pipelined publishes idxs back to back and then collects their PubAcks.
func (p *publishing) pipelined(ctx context.Context, idxs []int) {
	if len(idxs) == 0 {
		return
	}
	slab := p.slab(idxs)
	futures := make([]jetstream.PubAckFuture, len(idxs))
	for j, i := range idxs {
		f, err := p.send(ctx, i, &slab)
		if err != nil {
			for _, k := range idxs[j:] {
				p.out.fail(k, err)
			}
			break
		}
		futures[j] = f
	}
	for j, i := range idxs {
		if futures[j] != nil {
			p.wait(ctx, i, futures[j])
		}
	}
}

// inOrder publishes the run of one Key one message at a time, each once the previous one
// was stored, and stops at the first failure: the later messages are not sent, so none of
// them can be stored ahead of the one that failed.
func (p *publishing) inOrder(ctx context.Context, idxs []int) {
	slab := p.slab(idxs)
	for j, i := range idxs {
		f, err := p.send(ctx, i, &slab)
		if err != nil { // never sent, nor the rest: ctx ended or the transport closed
			for _, k := range idxs[j:] {
				p.out.fail(k, err)
			}
			return
		}
		if f != nil && p.wait(ctx, i, f) {
			continue
		}
		cause := p.out.errs[i]
		// Marked Unavailable whatever the cause: a message that was never sent did nothing
		// wrong, and must not be charged an attempt (nor die with a poison message ahead).
		held := outbox.Unavailable(fmt.Errorf("nats: message not sent: message %s of key %q before it failed: %v", p.msgs[i].ID, p.msgs[i].Key, cause))
		for _, k := range idxs[j+1:] {
			p.out.fail(k, held)
		}
		return
	}
}

// outcome collects what happened to each message of one Publish call. Each index is written
// by one goroutine only.
type outcome struct {
	msgs []*outbox.Message
	errs []error
}

func newOutcome(msgs []*outbox.Message) *outcome {
	return &outcome{msgs: msgs, errs: make([]error, len(msgs))}
}

func (o *outcome) fail(i int, err error) { o.errs[i] = err }

// err returns nil, the error every message failed with, or a BatchError.
func (o *outcome) err() error {
	var first error
	failed, alike := 0, true
	for _, err := range o.errs {
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		} else if alike && err.Error() != first.Error() {
			alike = false
		}
		failed++
	}
	switch {
	case failed == 0:
		return nil
	case failed == len(o.errs) && alike:
		// Every message failed the same way (a cancelled context, a closed transport, no
		// stream): one error says it best, and keeps its marks.
		return first
	}
	be := outbox.NewBatchError()
	for i, err := range o.errs {
		if err != nil {
			be.Add(o.msgs[i].ID, err)
		}
	}
	return be
}
