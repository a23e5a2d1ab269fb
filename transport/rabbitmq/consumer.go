package rabbitmq

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ErrConsumerStarted is returned by Start on a consumer that was started before: a consumer
// runs once; make a new one to consume again.
var ErrConsumerStarted = errors.New("rabbitmq consumer: already started")

// Consumer receives the messages of one RabbitMQ queue and hands each to a handler,
// Concurrency at a time. It consumes on a channel of its own with manual acknowledgements and a
// prefetch (basic.qos) of Concurrency, so the broker never sends more messages than there are
// handlers free.
//
// A message is acknowledged (basic.ack) when its handler returns nil. When the handler fails
// (returns an error, panics, or its context ends) the message is requeued (basic.nack with
// requeue) and the broker delivers it again, to this consumer or another. The consumer keeps no
// retry policy of its own, so the queue's governs: on a quorum queue, x-delivery-limit bounds
// the deliveries and the message past it goes to the queue's dead-letter exchange
// (x-dead-letter-exchange), or is dropped when it has none. A classic queue has no delivery
// limit: a message whose handler always fails is redelivered at once, for ever. Consume quorum
// queues with a delivery limit and a dead-letter exchange. A message that cannot be decoded is
// rejected without requeue (basic.nack, requeue false): it goes to the dead-letter exchange at
// once, since no redelivery can decode it.
//
// When the connection or channel drops, every unacknowledged message goes back to the queue
// (the broker requeues a channel's unacknowledged deliveries when it closes) and the consumer
// dials again, waiting ReconnectMin, doubling up to ReconnectMax, between attempts. A handler
// still running from the lost connection finishes, but its acknowledgement cannot reach the
// broker any more: its message is delivered again, a duplicate that an inbox absorbs.
//
// Delivery is at least once. Wrap the handler's work in an inbox's Handle (packages
// store/postgres/inbox, store/sqlite/inbox, store/mongo/inbox) for an exactly-once effect.
//
// The handler sees the message as the Transport sent it: ID, Type, Payload, Result and CreatedAt
// from the envelope, Key from the outbox.key header, every other string header in Headers
// (traceparent and tracestate among them).
type Consumer struct {
	cfg    ConsumerConfig
	conn   Config // the connection part of cfg, defaults applied
	tls    *tls.Config
	addr   string // host:port, for errors and logs (never the URL, which holds the password)
	handle func(ctx context.Context, m *outbox.Message) error
	log    *zap.Logger
	slots  chan struct{} // one per handler running

	mu       sync.Mutex
	started  bool
	stopping chan struct{} // closed by the first Stop
	stopOnce sync.Once
	dialCtx  context.Context // ends with the first Stop: bounds reconnecting
	stopDial context.CancelFunc
	workCtx  context.Context // the handlers' context, cancelled when a Stop's deadline passes
	stopWork context.CancelFunc
	done     chan struct{} // closed once every handler returned and the connection is closed
	handlers sync.WaitGroup
	stats    rabbitConsumerCounters
}

type rabbitConsumerCounters struct {
	received, handled, failed, malformed, acked, requeued, rejected, ackErrors, reconnects, connectErrors, inFlight atomic.Int64
}

// ConsumerStats is a snapshot of a consumer's counters since it started.
type ConsumerStats struct {
	// Received counts deliveries received from the broker (redeliveries included).
	Received int64
	// Handled counts handler calls that returned nil.
	Handled int64
	// Failed counts handler calls that returned an error, panicked or timed out; their
	// messages were requeued.
	Failed int64
	// Malformed counts messages that could not be decoded; they were rejected without requeue
	// (to the queue's dead-letter exchange, if it has one).
	Malformed int64
	// Acked counts basic.ack sent for handled messages.
	Acked int64
	// Requeued counts basic.nack with requeue: failed messages, and those received but not yet
	// handed to a handler when the consumer stopped.
	Requeued int64
	// Rejected counts basic.nack without requeue (malformed messages).
	Rejected int64
	// AckErrors counts acks and nacks that could not be sent because the channel was gone; the
	// broker requeued those messages with the channel.
	AckErrors int64
	// Reconnects counts connections made again after the connection or channel was lost;
	// ConnectErrors the attempts that failed.
	Reconnects, ConnectErrors int64
	// InFlight is how many handlers run now.
	InFlight int64
}

// NewConsumer validates cfg and returns a consumer of cfg.Queue that calls handle for each
// message. It does not connect; Start (or Run) does. handle must be safe for concurrent use
// when Concurrency is above 1.
func NewConsumer(cfg ConsumerConfig, handle func(ctx context.Context, m *outbox.Message) error) (*Consumer, error) {
	if handle == nil {
		return nil, &outbox.ConfigError{Component: "rabbitmq consumer", Field: "handle", Problem: "is nil"}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	conn := cfg.transportConfig().withDefaults()
	tc, err := tlsConfig(conn)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(conn.URL) // Validate parsed it
	port := u.Port()
	if port == "" {
		port = "5672"
		if u.Scheme == "amqps" {
			port = "5671"
		}
	}
	c := &Consumer{
		cfg: cfg, conn: conn, tls: tc, addr: net.JoinHostPort(u.Hostname(), port), handle: handle,
		log:      cfg.Logger.With(zap.String("component", "rabbitmq consumer"), zap.String("queue", cfg.Queue)),
		slots:    make(chan struct{}, cfg.Concurrency),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	c.dialCtx, c.stopDial = context.WithCancel(context.Background())
	c.workCtx, c.stopWork = context.WithCancel(context.Background())
	return c, nil
}

// String describes the consumer without secrets.
func (c *Consumer) String() string { return "rabbitmq.Consumer(" + c.cfg.String() + ")" }

// Start connects, opens the consumer's channel and starts consuming in the background; it does
// not block on messages. ctx bounds only the connection: the consumer runs until Stop. A broker
// that cannot be reached, or a queue that does not exist, fails Start (as outbox.Unavailable).
func (c *Consumer) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return ErrConsumerStarted
	}
	s, err := c.connect(ctx)
	if err != nil {
		return fmt.Errorf("rabbitmq consumer: start: %w", err)
	}
	c.started = true
	go c.run(s)
	c.log.Info("consuming", zap.String("broker", c.addr), zap.Int("concurrency", c.cfg.Concurrency))
	return nil
}

// Stop cancels the consumer (basic.cancel), requeues the messages received but not yet
// handled, waits for the handlers in flight and their acknowledgements, and closes the
// connection. When ctx ends first, it cancels the handlers' contexts (their messages are
// requeued) and returns ctx's error; a later Stop waits again. Stop on a consumer never started
// returns nil.
func (c *Consumer) Stop(ctx context.Context) error {
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if !started {
		return nil
	}
	c.stopOnce.Do(func() {
		close(c.stopping)
		c.stopDial()
	})
	select {
	case <-c.done:
		c.stopWork() // nothing runs under it any more; release the context
		return nil
	case <-ctx.Done():
		c.stopWork()
		return fmt.Errorf("rabbitmq consumer: stop: handlers still running: %w", ctx.Err())
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
		Acked: s.acked.Load(), Requeued: s.requeued.Load(), Rejected: s.rejected.Load(), AckErrors: s.ackErrors.Load(),
		Reconnects: s.reconnects.Load(), ConnectErrors: s.connectErrors.Load(), InFlight: s.inFlight.Load(),
	}
}

// consumerSession is one connection and the channel consuming on it.
type consumerSession struct {
	conn       *amqp.Connection
	ch         *amqp.Channel
	tag        string
	deliveries <-chan amqp.Delivery
}

// close closes the channel and the connection, not waiting longer than closeTimeout for a
// broker that stopped answering. Closing the channel requeues whatever it left unacknowledged.
func (s *consumerSession) close() {
	_ = s.conn.CloseDeadline(time.Now().Add(closeTimeout))
}

// connect dials the broker, opens a channel with a prefetch of Concurrency and consumes the
// queue with manual acknowledgements. Its errors are classified.
func (c *Consumer) connect(ctx context.Context) (*consumerSession, error) {
	timeout := c.conn.DialTimeout
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(c.conn.ConnectionName)
	conn, err := amqp.DialConfig(c.conn.URL, amqp.Config{
		Heartbeat:       c.conn.Heartbeat,
		TLSClientConfig: c.tls.Clone(),
		Properties:      props,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			nc, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds TLS and the AMQP handshake; the library clears it once connected.
			deadline := time.Now().Add(timeout)
			if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
				deadline = dl
			}
			if err := nc.SetDeadline(deadline); err != nil {
				nc.Close()
				return nil, err
			}
			return &boundedConn{Conn: nc, timeout: c.conn.WriteTimeout}, nil
		},
	})
	if err != nil {
		return nil, classify("connect to "+c.addr, scrub(c.conn, err))
	}
	s := &consumerSession{conn: conn, tag: consumerTag()}
	fail := func(op string, err error) (*consumerSession, error) {
		s.close()
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return nil, outbox.Unavailable(fmt.Errorf("rabbitmq consumer: queue %q does not exist (declare it, or fix Queue): %w", c.cfg.Queue, err))
		}
		return nil, classify(op, scrub(c.conn, err))
	}
	if s.ch, err = conn.Channel(); err != nil {
		return fail("open channel", err)
	}
	// Per consumer (global=false): the broker keeps at most Concurrency messages
	// unacknowledged on this consumer, one per handler.
	if err := s.ch.Qos(c.cfg.Concurrency, 0, false); err != nil {
		return fail("set prefetch", err)
	}
	// Consume, not ConsumeWithContext: cancelling is Stop's job, by basic.cancel and closing
	// the channel, which keeps closing a channel from waiting on a context's watcher.
	if s.deliveries, err = s.ch.Consume(c.cfg.Queue, s.tag, false, false, false, false, nil); err != nil {
		return fail("consume "+c.cfg.Queue, err)
	}
	return s, nil
}

// consumerTag is a consumer tag unique to this consumer, needed to cancel it.
func consumerTag() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "outbox-consumer-" + hex.EncodeToString(b[:])
}

// run consumes s until Stop, dialing again whenever the connection or channel is lost.
func (c *Consumer) run(s *consumerSession) {
	defer close(c.done)
	backoff := time.Duration(0)
	for {
		if !c.consume(s) {
			c.shutdown(s)
			return
		}
		s.close()
		for s = nil; s == nil; {
			backoff = min(max(2*backoff, c.conn.ReconnectMin), c.conn.ReconnectMax)
			c.log.Warn("connection lost; reconnecting", zap.Duration("backoff", backoff))
			wait := time.NewTimer(backoff)
			select {
			case <-wait.C:
			case <-c.stopping:
				wait.Stop()
				c.handlers.Wait()
				return
			}
			next, err := c.connect(c.dialCtx)
			if err != nil {
				if c.dialCtx.Err() != nil {
					c.handlers.Wait()
					return
				}
				c.stats.connectErrors.Add(1)
				c.log.Warn("reconnect failed", zap.Error(err))
				continue
			}
			s, backoff = next, 0
			c.stats.reconnects.Add(1)
			c.log.Info("reconnected", zap.String("broker", c.addr))
		}
	}
}

// consume hands s's deliveries to handlers, one slot each, until the deliveries end (the
// channel or connection was lost: it returns true) or Stop is called (false).
func (c *Consumer) consume(s *consumerSession) (lost bool) {
	for {
		select {
		case d, ok := <-s.deliveries:
			if !ok {
				return true
			}
			c.stats.received.Add(1)
			select {
			case c.slots <- struct{}{}:
			case <-c.stopping:
				c.requeue(&d)
				return false
			}
			c.handlers.Add(1)
			go c.process(d)
		case <-c.stopping:
			return false
		}
	}
}

// shutdown stops s gracefully: basic.cancel so the broker sends nothing more, the deliveries
// received but not handed to a handler requeued, the handlers waited for (their acks need the
// channel), then the channel and connection closed.
func (c *Consumer) shutdown(s *consumerSession) {
	if err := s.ch.Cancel(s.tag, false); err != nil {
		// Only a closed channel ends the deliveries now: without it the loop below would wait
		// for ever, the connection would stay open and what the library holds for this
		// consumer would stay unacknowledged, never redelivered.
		c.log.Warn("cancel failed; closing the channel requeues the messages", zap.Error(classify("cancel", err)))
		_ = s.ch.Close()
	}
	for d := range s.deliveries { // closed by Cancel, or by the channel closing
		c.stats.received.Add(1)
		c.requeue(&d)
	}
	c.handlers.Wait()
	s.close()
}

func (c *Consumer) requeue(d *amqp.Delivery) {
	if err := d.Nack(false, true); err != nil {
		c.stats.ackErrors.Add(1)
		return
	}
	c.stats.requeued.Add(1)
}

// process handles one delivery and settles it: ack when handled, nack with requeue when the
// handler failed, nack without requeue when it cannot be decoded.
func (c *Consumer) process(d amqp.Delivery) {
	defer c.handlers.Done()
	defer func() { <-c.slots }()
	c.stats.inFlight.Add(1)
	defer c.stats.inFlight.Add(-1)
	msg, err := decodeDelivery(&d, c.cfg.RawPayload)
	if err != nil {
		c.stats.malformed.Add(1)
		c.logFor(&d, nil).Error("malformed message rejected to the queue's dead-letter exchange (dropped if it has none)",
			zap.String("message_id", d.MessageId), zap.Int("body_bytes", len(d.Body)), zap.Error(err))
		if err := d.Nack(false, false); err != nil {
			c.stats.ackErrors.Add(1)
			return
		}
		c.stats.rejected.Add(1)
		return
	}
	if c.workCtx.Err() != nil {
		c.requeue(&d) // stopping past its deadline: leave it for redelivery
		return
	}
	hctx, cancel := context.WithCancel(c.workCtx)
	if c.cfg.HandlerTimeout > 0 {
		hctx, cancel = context.WithTimeout(c.workCtx, c.cfg.HandlerTimeout)
	}
	err = c.call(hctx, msg)
	cancel()
	if err != nil {
		c.stats.failed.Add(1)
		log := c.logFor(&d, msg)
		log.Warn("handler failed; the message is requeued for the broker to deliver again", zap.Error(err))
		if err := d.Nack(false, true); err != nil {
			c.stats.ackErrors.Add(1)
			log.Warn("nack failed; the broker requeues the message with the lost channel", zap.Error(classify("nack", err)))
			return
		}
		c.stats.requeued.Add(1)
		return
	}
	c.stats.handled.Add(1)
	if err := d.Ack(false); err != nil {
		c.stats.ackErrors.Add(1)
		c.logFor(&d, msg).Warn("ack failed; the message will be delivered again", zap.Error(classify("ack", err)))
		return
	}
	c.stats.acked.Add(1)
	if ce := c.log.Check(zapcore.DebugLevel, "handled"); ce != nil {
		ce.Write(zap.String("id", msg.ID), zap.String("type", msg.Type))
	}
}

// logFor is the consumer's logger with the fields naming a delivery and, once decoded, its
// message. It is built only when there is something to log: the handled path logs nothing.
func (c *Consumer) logFor(d *amqp.Delivery, msg *outbox.Message) *zap.Logger {
	fields := []zap.Field{zap.Uint64("delivery_tag", d.DeliveryTag), zap.Bool("redelivered", d.Redelivered)}
	if n, ok := d.Headers["x-delivery-count"]; ok {
		fields = append(fields, zap.Any("delivery_count", n)) // quorum queues count earlier deliveries
	}
	if msg != nil {
		fields = append(fields, zap.String("id", msg.ID), zap.String("type", msg.Type))
	}
	return c.log.With(fields...)
}

// call runs the handler, turning a panic into an error so one bad message cannot stop the
// consumer.
func (c *Consumer) call(ctx context.Context, m *outbox.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("rabbitmq consumer: handler panicked: %v", r)
		}
	}()
	return c.handle(ctx, m)
}
