package rabbitmq

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
	"go.uber.org/zap"
)

// Consumer receives the messages of one RabbitMQ queue and hands each to the handler,
// Concurrency at a time, on the consumer runtime of package consume. It consumes on a channel of
// its own with manual acknowledgements and a prefetch (basic.qos) of Concurrency, so the broker
// never sends more messages than there are handlers free.
//
// A message is acknowledged (basic.ack) when its handler returns nil. When the handler fails
// (returns an error, panics, or its context ends) the message is requeued at once (basic.nack
// with requeue: RabbitMQ cannot delay a redelivery) and the broker delivers it again, to this
// consumer or another. The consumer keeps no retry limit of its own, so the queue's governs: on
// a quorum queue, x-delivery-limit bounds the deliveries and the message past it goes to the
// queue's dead-letter exchange (x-dead-letter-exchange), or is dropped when it has none. A
// classic queue has no delivery limit: a message whose handler always fails is redelivered at
// once, for ever. Consume quorum queues with a delivery limit and a dead-letter exchange. A
// message that cannot be decoded is rejected without requeue (basic.nack, requeue false): it
// goes to the dead-letter exchange at once, since no redelivery can decode it.
//
// When the connection or channel drops, every unacknowledged message goes back to the queue
// (the broker requeues a channel's unacknowledged deliveries when it closes) and the consumer
// dials again, waiting ReconnectMin, doubling up to ReconnectMax, between attempts (with
// Connection.Conn, it opens a channel again on that connection, and waits while it is closed:
// see Connection.Conn). A handler
// still running from the lost connection finishes, but its acknowledgement cannot reach the
// broker any more: its message is delivered again, a duplicate that an inbox absorbs. Stop
// cancels the consumer (basic.cancel, waiting at most DefaultCancelTimeout for the broker's
// answer) and closes the connection (only its channel on a Connection.Conn), so the broker
// requeues whatever it sent and was not
// settled, the messages prefetched but never handed to a handler included.
//
// Order: a queue hands its messages out in order, and a requeued message goes back to its
// place, so a consumer with Concurrency 1, alone on its queue (or the active one of a queue
// declared with x-single-active-consumer), handles them in the queue's order, a failed message
// before those behind it. With Concurrency above 1, handlers run side by side and finish in any
// order.
//
// Delivery is at least once. Wrap the handler's work in an inbox's Handle (packages
// store/postgres/inbox, store/sqlite/inbox, store/mongo/inbox) for an exactly-once effect.
//
// The handler sees the message as the Transport sent it: ID, Type, Payload, Result and CreatedAt
// from the envelope (raw: ID from message-id, Type from type or the outbox.type header,
// CreatedAt from timestamp), Key from the outbox.key header, every other string header in
// Headers (traceparent and tracestate among them).
type Consumer struct {
	*consume.Consumer
	a *adapter
}

// ConsumerStats is a snapshot of a consumer's counters: Acked counts basic.ack, Requeued
// basic.nack with requeue, Rejected basic.nack without requeue (malformed messages), AckErrors
// the acks that could not reach the broker (the channel was gone; the broker requeued those
// messages with it), ReceiveErrors the connections lost.
type ConsumerStats = consume.Stats

// NewConsumer validates cfg and returns a consumer of cfg.Queue that calls cfg.Handler for each
// message. It does not connect; Start (or Run) does, and fails (as outbox.Unavailable) when the
// broker cannot be reached or the queue does not exist. The handler must be safe for
// concurrent use when Concurrency is above 1. ctx is not used yet: it is there so that every
// consumer's NewConsumer has the same form.
func NewConsumer(_ context.Context, cfg ConsumerConfig) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tc, err := tlsConfig(cfg.Connection)
	if err != nil {
		return nil, err
	}
	a := &adapter{
		cfg: cfg, conn: cfg.Connection, tls: tc, addr: cfg.addr(),
		log: cfg.Logger.With(zap.String("component", "rabbitmq consumer"), zap.String("queue", cfg.Queue)),
	}
	// One poller: it takes what the prefetch brought, up to the free handler slots, in one call.
	c, err := consume.New(a, consume.Config{
		Name: "rabbitmq consumer", Handler: cfg.Handler, RawPayload: cfg.RawPayload,
		Concurrency: cfg.Concurrency, ReceiveBatch: cfg.Concurrency, Pollers: 1,
		HandlerTimeout: cfg.HandlerTimeout, StopTimeout: DefaultConsumerStopTimeout, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &Consumer{Consumer: c, a: a}, nil
}

// String describes the consumer without secrets.
func (c *Consumer) String() string { return fmt.Sprintf("rabbitmq.Consumer(%v)", c.a.cfg) }

// errLost is what Receive returns when the connection or channel was lost.
var errLost = errors.New("rabbitmq consumer: connection or channel lost; dialing again")

// adapter is the runtime's view of the queue: one connection and the channel consuming on it,
// dialed again after a loss.
type adapter struct {
	cfg  ConsumerConfig
	conn Connection // cfg.Connection, defaults applied
	tls  *tls.Config
	addr string // host:port, for errors and logs (never the URL, which holds the password)
	log  *zap.Logger

	mu     sync.Mutex
	s      *consumerSession // nil after a loss, until Receive dials again
	closed bool
	// backoff is the wait before the next dial; only Receive, on the runtime's one poller,
	// touches it.
	backoff time.Duration
}

// consumerSession is one connection and the channel consuming on it.
type consumerSession struct {
	conn       *amqp.Connection
	owned      bool // conn was dialed for this session, not given as Connection.Conn
	ch         *amqp.Channel
	tag        string
	deliveries <-chan amqp.Delivery
}

// close closes the channel and the connection (only the channel of a given one), not waiting
// longer than closeTimeout for a broker that stopped answering. Closing the channel requeues
// whatever it left unacknowledged.
func (s *consumerSession) close() {
	if !s.owned {
		if s.ch != nil {
			closeChannel(s.ch)
		}
		return
	}
	_ = s.conn.CloseDeadline(time.Now().Add(closeTimeout))
}

// Open connects and starts consuming: Start fails when the broker or the queue is not there.
func (a *adapter) Open(ctx context.Context) error {
	s, err := a.connect(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.s = s
	a.mu.Unlock()
	a.log.Info("consuming", zap.String("broker", a.addr))
	return nil
}

// Receive waits for the next delivery and adds those the prefetch already brought, up to max.
// After a loss it dials again first, with backoff, until it is connected or ctx ends.
func (a *adapter) Receive(ctx context.Context, max int) ([]consume.Delivery, error) {
	s, err := a.session(ctx)
	if err != nil {
		return nil, err
	}
	var out []consume.Delivery
	select {
	case d, ok := <-s.deliveries:
		if !ok {
			a.lost(s)
			return nil, errLost
		}
		out = append(out, a.delivery(d))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(out) < max {
		select {
		case d, ok := <-s.deliveries:
			if !ok {
				return out, nil // the next call notices the loss
			}
			out = append(out, a.delivery(d))
		default:
			return out, nil
		}
	}
	return out, nil
}

// session returns the live session, dialing one when the last was lost: it waits ReconnectMin,
// doubling up to ReconnectMax, before each attempt, and gives up only when ctx ends.
func (a *adapter) session(ctx context.Context) (*consumerSession, error) {
	a.mu.Lock()
	s := a.s
	a.mu.Unlock()
	for s == nil {
		a.backoff = min(max(2*a.backoff, a.conn.ReconnectMin), a.conn.ReconnectMax)
		wait := time.NewTimer(a.backoff)
		select {
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return nil, ctx.Err()
		}
		next, err := a.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			a.log.Warn("reconnect failed", zap.Error(err), zap.Duration("backoff", a.backoff))
			continue
		}
		a.mu.Lock()
		if a.closed { // not after Close: the runtime calls Close once every Receive returned
			a.mu.Unlock()
			next.close()
			return nil, consume.ErrStopped
		}
		a.s, s, a.backoff = next, next, 0
		a.mu.Unlock()
		a.log.Info("reconnected", zap.String("broker", a.addr))
	}
	return s, nil
}

// lost drops s: the broker requeued its unacknowledged messages when its channel closed.
func (a *adapter) lost(s *consumerSession) {
	a.mu.Lock()
	if a.s == s {
		a.s = nil
	}
	a.mu.Unlock()
	s.close()
	a.log.Warn("connection lost; reconnecting")
}

// Close cancels the consumer and closes the connection, so the broker requeues what it sent and
// was not settled. basic.cancel first, so that nothing new is in flight when the channel closes;
// amqp091-go's Cancel waits for the broker's cancel-ok without a deadline, so it runs aside and
// is waited for at most DefaultCancelTimeout (or ctx). Whether it answered or not, closing the
// connection is what hands the messages back: a consumer whose connection stayed open would
// keep the prefetched ones unacknowledged, never redelivered.
func (a *adapter) Close(ctx context.Context) error {
	a.mu.Lock()
	s := a.s
	a.s, a.closed = nil, true
	a.mu.Unlock()
	if s == nil {
		return nil
	}
	cancelled := make(chan error, 1)
	go func() { cancelled <- s.ch.Cancel(s.tag, false) }()
	wait := time.NewTimer(DefaultCancelTimeout)
	defer wait.Stop()
	var err error
	answered := false
	select {
	case err = <-cancelled:
		answered = true
		if err != nil {
			err = classify("cancel", err)
		}
	case <-wait.C:
		err = errors.New("rabbitmq consumer: cancel: no cancel-ok within " + DefaultCancelTimeout.String())
	case <-ctx.Done():
		err = fmt.Errorf("rabbitmq consumer: cancel: %w", ctx.Err())
	}
	if err != nil {
		a.log.Warn("cancel failed; closing the connection requeues the messages", zap.Error(err))
	}
	s.close()
	if !answered {
		select {
		case <-cancelled: //nolint:errcheck // Cancel returns once the channel is closed; the failure is logged above
		case <-time.After(closeTimeout):
		}
	}
	return nil
}

// delivery turns an AMQP delivery into the runtime's: the string headers as headers (numbers,
// tables and arrays such as x-death and x-delivery-count are the broker's), raw mode's ID and
// Type from the message-id and type properties, and the delivery's attempt.
func (a *adapter) delivery(d amqp.Delivery) consume.Delivery {
	out := consume.Delivery{Body: d.Body, Attempt: attempt(d), Settler: &settler{d: d}}
	out.Ref = d.MessageId
	if out.Ref == "" {
		out.Ref = "delivery " + strconv.FormatUint(d.DeliveryTag, 10)
	}
	for name, v := range d.Headers {
		if s, ok := v.(string); ok {
			if out.Headers == nil {
				out.Headers = make(map[string]string, len(d.Headers)+2)
			}
			out.Headers[name] = s
		}
	}
	if !a.cfg.RawPayload {
		return out
	}
	if out.Headers == nil {
		out.Headers = make(map[string]string, 2)
	}
	if d.MessageId != "" {
		out.Headers[consume.HeaderID] = d.MessageId
	}
	if d.Type != "" {
		out.Headers[consume.HeaderType] = d.Type
	}
	// The raw body carries no CreatedAt: the timestamp property does, which the runtime's
	// Delivery has no field for, so the message is decoded here, by the runtime's own Decode.
	msg, err := consume.Decode(out, true)
	if err != nil {
		out.Err = fmt.Errorf("rabbitmq consumer: %w", err)
		return out
	}
	msg.CreatedAt = d.Timestamp
	out.Message = msg
	return out
}

// attempt is the delivery's count: a quorum queue's x-delivery-count (the earlier deliveries)
// plus one, else 1 for a delivery the broker never sent before, else 0 (a redelivery of a
// classic queue: the broker does not say how many there were).
func attempt(d amqp.Delivery) int {
	switch n := d.Headers["x-delivery-count"].(type) {
	case int64:
		return int(n) + 1
	case int32:
		return int(n) + 1
	case int:
		return n + 1
	case int16:
		return int(n) + 1
	case int8:
		return int(n) + 1
	}
	if !d.Redelivered {
		return 1
	}
	return 0
}

// consumerTag is a consumer tag unique to this consumer, needed to cancel it.
func consumerTag() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "outbox-consumer-" + hex.EncodeToString(b[:])
}

// connect dials the broker, opens a channel with a prefetch of Concurrency and consumes the
// queue with manual acknowledgements. Its errors are classified.
func (a *adapter) connect(ctx context.Context) (*consumerSession, error) {
	conn, owned, err := a.conn.open(ctx, a.tls)
	if err != nil {
		return nil, classify("connect to "+a.addr, scrub(a.conn, err))
	}
	s := &consumerSession{conn: conn, owned: owned, tag: consumerTag()}
	fail := func(op string, err error) (*consumerSession, error) {
		s.close()
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return nil, outbox.Unavailable(fmt.Errorf("rabbitmq consumer: queue %q does not exist (declare it, or fix Queue): %w", a.cfg.Queue, err))
		}
		return nil, classify(op, scrub(a.conn, err))
	}
	if s.ch, err = conn.Channel(); err != nil {
		return fail("open channel", err)
	}
	// Per consumer (global=false): the broker keeps at most Concurrency messages
	// unacknowledged on this consumer, one per handler.
	if err := s.ch.Qos(a.cfg.Concurrency, 0, false); err != nil {
		return fail("set prefetch", err)
	}
	// Consume, not ConsumeWithContext: cancelling is Close's job, by basic.cancel and closing
	// the connection, which keeps closing a channel from waiting on a context's watcher.
	if s.deliveries, err = s.ch.Consume(a.cfg.Queue, s.tag, false, false, false, false, nil); err != nil {
		return fail("consume "+a.cfg.Queue, err)
	}
	return s, nil
}

// settler settles one delivery on the channel it came on. A channel lost since cannot carry
// the settlement: the broker requeued the message with it, and the error says so.
type settler struct {
	d amqp.Delivery
}

// Ack sends basic.ack.
func (s *settler) Ack(context.Context) error {
	if err := s.d.Ack(false); err != nil {
		return classify("ack", err)
	}
	return nil
}

// Nack requeues the message at once (basic.nack, requeue true): RabbitMQ cannot deliver it
// later, so delay is not waited for.
func (s *settler) Nack(context.Context, time.Duration, error) error {
	if err := s.d.Nack(false, true); err != nil {
		return classify("nack", err)
	}
	return nil
}

// Reject sends basic.nack without requeue: to the queue's dead-letter exchange, dropped when it
// has none.
func (s *settler) Reject(context.Context, error) error {
	if err := s.d.Nack(false, false); err != nil {
		return classify("reject", err)
	}
	return nil
}
