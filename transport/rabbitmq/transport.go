package rabbitmq

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txoutbox/outbox"
)

// Transport publishes outbox messages to RabbitMQ with publisher confirms. It is safe for
// concurrent use: every Publish shares one connection and one confirm-mode channel.
//
// It never retries a message: retrying belongs to the relay's backoff and middleware/retry. It
// reconnects by itself, though: a Publish after the connection was lost dials again, no sooner
// than the reconnect backoff allows (with Connection.Conn, it opens a channel again on that
// connection, and fails while it is closed).
type Transport struct {
	cfg      Config
	tls      *tls.Config
	addr     string       // host:port, for errors (never the URL, which holds the password)
	maxBytes atomic.Int64 // MaxMessageBytes, lowered to the broker's limit when it reports one

	mu       sync.Mutex // guards the fields below
	sess     *session
	dialing  *dialing  // the dial in progress, if any
	dialErr  error     // the last failed dial
	nextDial time.Time // no dial before this after a failure
	backoff  time.Duration

	closed atomic.Bool
}

// New validates cfg and returns a Transport. It does not connect: the first Publish does (or,
// with Connection.Conn, opens its channel on that connection). ctx is not used yet: it is there
// so that every transport's New has the same form.
func New(_ context.Context, cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tc, err := tlsConfig(cfg.Connection)
	if err != nil {
		return nil, err
	}
	t := &Transport{cfg: cfg, tls: tc, addr: cfg.addr()}
	t.maxBytes.Store(int64(cfg.MaxMessageBytes))
	return t, nil
}

// String describes the transport without secrets.
func (t *Transport) String() string { return fmt.Sprintf("rabbitmq.Transport(%v)", t.cfg) }

// KeepsKeyOrder reports whether Config.KeepKeyOrder is set: then one Publish keeps each Key's order
// and stops a Key at its first failure (outbox.KeyOrderer).
func (t *Transport) KeepsKeyOrder() bool { return t.cfg.KeepKeyOrder }

// Close makes further publishes fail with outbox.ErrClosed and closes the connection (only the
// channel of a Connection.Conn, which stays the service's to close). Messages
// of a Publish still waiting for their confirms then fail (never reported published).
func (t *Transport) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	t.mu.Lock()
	s := t.sess
	t.sess = nil
	t.mu.Unlock()
	if s != nil {
		s.close()
	}
	return nil
}

// session returns the live session, dialing a new one when there is none or it was lost, but
// not within the reconnect backoff of a failed dial. Concurrent callers share one dial, each
// waiting no longer than its own ctx.
func (t *Transport) session(ctx context.Context) (*session, error) {
	t.mu.Lock()
	if t.closed.Load() {
		t.mu.Unlock()
		return nil, fmt.Errorf("rabbitmq: publish: %w", outbox.ErrClosed)
	}
	if s := t.sess; s != nil && !s.isLost() {
		t.mu.Unlock()
		return s, nil
	}
	if d := t.dialing; d != nil {
		t.mu.Unlock()
		select {
		case <-d.done:
			return d.s, d.err
		case <-ctx.Done():
			return nil, fmt.Errorf("rabbitmq: publish: waiting for the connection: %w", ctx.Err())
		}
	}
	if wait := time.Until(t.nextDial); wait > 0 {
		t.mu.Unlock()
		return nil, fmt.Errorf("%w (reconnecting in %s)", t.dialErr, wait.Round(time.Millisecond))
	}
	old := t.sess
	t.sess = nil
	d := &dialing{done: make(chan struct{})}
	t.dialing = d
	t.mu.Unlock()

	if old != nil {
		old.close()
	}
	d.s, d.err = t.dial(ctx)

	t.mu.Lock()
	t.dialing = nil
	switch {
	case d.err == nil && t.closed.Load():
		// Closed while dialing: nobody will close this session but us.
		defer d.s.close()
		d.s, d.err = nil, fmt.Errorf("rabbitmq: publish: %w", outbox.ErrClosed)
	case d.err == nil:
		t.sess = d.s
		t.backoff, t.dialErr, t.nextDial = 0, nil, time.Time{}
	case ctx.Err() == nil: // a cancelled dial is not the broker's failure: no backoff
		t.backoff = min(max(t.backoff*2, t.cfg.ReconnectMin), t.cfg.ReconnectMax)
		t.dialErr, t.nextDial = d.err, time.Now().Add(t.backoff)
	}
	t.mu.Unlock()
	close(d.done)
	return d.s, d.err
}

// dialing is a dial in progress that concurrent publishes wait for.
type dialing struct {
	done chan struct{}
	s    *session
	err  error
}

// Publish sends msgs on the confirm channel, all of them before waiting, and returns once the
// broker confirmed every one (or ctx ended, the connection closed, or the broker blocked it).
// It returns nil when the broker acknowledged every message; a *outbox.BatchError naming the
// messages that failed when some did; or, when every message failed for one reason (the broker
// is unreachable), that error.
//
// Messages are published with mandatory set: one that no queue takes is returned by the
// broker and fails, as does one the broker nacks. Both are outages of the destination
// (outbox.Unavailable), as are a missing exchange, a lost connection and a blocked one. A message
// whose confirm never came is reported failed, never published. Errors no retry can fix are
// marked with outbox.Permanent: a body above MaxMessageBytes (or above the broker's own limit), a
// routing key or header name above the AMQP limit, a payload that is not JSON.
//
// Messages go out in slice order on one channel, so the broker keeps their order. With
// KeepKeyOrder, a Key's next message is sent only once its previous one was confirmed, and after
// a Key's first failure its later messages are held back (failed, never sent).
func (t *Transport) Publish(ctx context.Context, msgs []*outbox.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if t.closed.Load() {
		return fmt.Errorf("rabbitmq: publish: %w", outbox.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rabbitmq: publish: %w", err)
	}
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("rabbitmq: publish: message %d is nil", i)
		}
	}
	out := newOutcome(msgs)
	ready := make([]*outgoing, len(msgs)) // nil where the message failed before sending
	var outs []outgoing
	for i, m := range msgs {
		o, err := t.encode(i, m)
		if err != nil {
			out.fail(i, err, false)
			continue
		}
		outs = append(outs, o)
	}
	if len(outs) == 0 {
		return out.err()
	}

	s, err := t.session(ctx)
	if err != nil {
		for _, o := range outs {
			out.fail(o.index, err, true)
		}
		return out.err()
	}
	checked := map[string]error{}
	for k := range outs {
		o := &outs[k]
		err, seen := checked[o.exchange]
		if !seen {
			err = s.checkExchange(o.exchange)
			checked[o.exchange] = err
		}
		if err != nil {
			out.fail(o.index, err, true)
			continue
		}
		ready[o.index] = o
	}

	if !t.cfg.KeepKeyOrder {
		var batch []outgoing
		for _, o := range ready {
			if o != nil {
				batch = append(batch, *o)
			}
		}
		t.sendRound(ctx, s, batch, out)
		return out.err()
	}
	t.sendByKey(ctx, s, msgs, ready, out)
	return out.err()
}

// sendRound publishes batch as one round and records each message's outcome.
func (t *Transport) sendRound(ctx context.Context, s *session, batch []outgoing, out *outcome) {
	if len(batch) == 0 {
		return
	}
	for j, err := range s.send(ctx, batch) {
		if err != nil {
			out.fail(batch[j].index, err, true)
		}
	}
}

// sendByKey publishes in rounds: each round carries the next message of every Key (and, in the
// first, every message without a Key), and a Key's message goes out only after the broker
// confirmed the one before it. A Key whose message failed, before or after sending, has its
// later messages held back.
func (t *Transport) sendByKey(ctx context.Context, s *session, msgs []*outbox.Message, ready []*outgoing, out *outcome) {
	var keys []string
	queue := map[string][]int{}
	var first []outgoing
	for i, m := range msgs {
		if m.Key == "" {
			if ready[i] != nil {
				first = append(first, *ready[i])
			}
			continue
		}
		if _, ok := queue[m.Key]; !ok {
			keys = append(keys, m.Key)
		}
		queue[m.Key] = append(queue[m.Key], i)
	}
	// stopped holds, per Key, the position in its queue of its first failed message.
	stopped := map[string]int{}
	for round := 0; ; round++ {
		batch := first
		first = nil
		for _, k := range keys {
			q := queue[k]
			if _, stop := stopped[k]; stop || round >= len(q) {
				continue
			}
			if ready[q[round]] == nil {
				stopped[k] = round // failed before sending
				continue
			}
			batch = append(batch, *ready[q[round]])
		}
		if len(batch) == 0 {
			break
		}
		t.sendRound(ctx, s, batch, out)
		for _, o := range batch {
			if k := msgs[o.index].Key; k != "" && out.errs[o.index] != nil {
				stopped[k] = round
			}
		}
	}
	for k, at := range stopped {
		q := queue[k]
		for _, i := range q[at+1:] {
			if out.errs[i] == nil { // keep a message's own failure, which may be permanent
				out.fail(i, heldBack(msgs[i], out.errs[q[at]]), true)
			}
		}
	}
}

// heldBack is the failure of a message not sent because an earlier message of its Key failed.
// It is never permanent (the message itself is fine); it is an outage when the cause was.
func heldBack(m *outbox.Message, cause error) error {
	err := fmt.Errorf("rabbitmq: message %s: held back: an earlier message of key %q failed: %v", m.ID, m.Key, cause)
	if outbox.IsUnavailable(cause) {
		return outbox.Unavailable(err)
	}
	return err
}

// outcome collects what happened to each message of one Publish call.
type outcome struct {
	msgs []*outbox.Message
	errs []error
	call []bool // the error came from the broker or the connection, not from the message itself
}

func newOutcome(msgs []*outbox.Message) *outcome {
	return &outcome{msgs: msgs, errs: make([]error, len(msgs)), call: make([]bool, len(msgs))}
}

func (o *outcome) fail(i int, err error, wholeCall bool) { o.errs[i], o.call[i] = err, wholeCall }

// err returns nil, the error every message failed with, or a BatchError.
func (o *outcome) err() error {
	var first error
	failed, calls, alike := 0, 0, true
	for i, err := range o.errs {
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		} else if alike && err.Error() != first.Error() {
			alike = false
		}
		failed++
		if o.call[i] {
			calls++
		}
	}
	switch {
	case failed == 0:
		return nil
	case failed == len(o.errs) && calls == failed && alike:
		// Every message failed the same way for a reason outside the messages (an unreachable
		// broker, a cancelled context): one error says it best.
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
