package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ErrConsumerStarted is returned by Start on a consumer that was started before: a consumer
// runs once; make a new one to consume again.
var ErrConsumerStarted = errors.New("nats consumer: already started")

// maxFetchBatch bounds the messages one pull request asks for: nats.go buffers a request's
// messages in channels sized by it, and a larger Concurrency is served by successive requests.
const maxFetchBatch = 256

// Consumer reads the messages of a durable JetStream pull consumer and hands each to a handler,
// Concurrency at a time. Acknowledgement is explicit and per message:
//
//   - the handler returns nil: the message is acknowledged (Ack, confirmed by the server);
//   - the handler fails (returns an error, panics, or its context ends): the message is
//     nak'ed (NakDelay: at once, after a delay, or not at all so that AckWait expires), and
//     JetStream delivers it again;
//   - the body or headers cannot be decoded: the message is terminated (Term), since no
//     redelivery can decode it; the server emits a MSG_TERMINATED advisory for it.
//
// The consumer keeps no retry policy of its own: the durable consumer's governs. Its
// MaxDeliver bounds the deliveries of a failing message: after the last one JetStream stops
// delivering it and publishes a MAX_DELIVERIES advisory
// ($JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>) naming its stream sequence;
// the message stays in the stream under the stream's retention. That advisory (or the
// terminated one) is the dead-letter queue: subscribe to it, or capture it in a stream, and
// read the message by its sequence. Set MaxDeliver on every durable consumer you consume, or a
// poison message circulates for ever.
//
// While a handler runs, its message is marked in progress every ExtendInterval, which restarts
// its AckWait. Delivery is at least once: a handler may see a message again after a crash, a
// lost ack, or an AckWait that expired. Wrap the handler's work in an inbox's Handle (packages
// store/postgres/inbox, store/sqlite/inbox, store/mongo/inbox) for an exactly-once effect.
//
// The handler sees the message as the Transport published it: ID, Type, Payload, Result and
// CreatedAt from the envelope, Key from outbox.key, every other header in Headers (traceparent
// and tracestate among them), JetStream's Nats-* headers left out.
type Consumer struct {
	cfg    ConsumerConfig
	handle func(ctx context.Context, m *outbox.Message) error
	log    *zap.Logger
	// slots bounds the messages held (running, waiting for a handler, or asked for by the
	// fetcher): Concurrency plus as many again, so the next pull request overlaps the handlers'
	// work. handlers bounds the handlers running.
	slots    chan struct{}
	handlers chan struct{}

	mu       sync.Mutex
	started  bool
	nc       *natsgo.Conn
	ownNC    bool
	cons     jetstream.Consumer
	extend   time.Duration
	stopPoll context.CancelFunc
	stopWork context.CancelFunc
	done     chan struct{} // closed when the fetcher and every handler have returned
	wg       sync.WaitGroup
	stats    natsConsumerCounters
}

type natsConsumerCounters struct {
	received, handled, failed, malformed, acked, ackErrors, naked, nakErrors, extended, extendErrors, fetchErrors, inFlight atomic.Int64
}

// ConsumerStats is a snapshot of a consumer's counters since it started.
type ConsumerStats struct {
	// Received counts messages received from JetStream (redeliveries included).
	Received int64
	// Handled counts handler calls that returned nil.
	Handled int64
	// Failed counts handler calls that returned an error, panicked or timed out, and messages
	// received but not handled because the consumer was stopping; all were left to redelivery.
	Failed int64
	// Malformed counts messages whose body or headers could not be decoded; they were
	// terminated.
	Malformed int64
	// Acked counts acknowledgements the server confirmed; AckErrors the ones it did not (those
	// messages are delivered again).
	Acked, AckErrors int64
	// Naked counts naks sent for failed messages; NakErrors the naks (or terms) that could not
	// be sent (those messages come back when their AckWait ends).
	Naked, NakErrors int64
	// Extended counts InProgress marks sent for running handlers; ExtendErrors the failed ones.
	Extended, ExtendErrors int64
	// FetchErrors counts pull requests that failed.
	FetchErrors int64
	// InFlight is how many handlers run now.
	InFlight int64
}

// NewConsumer validates cfg and returns a consumer of the durable pull consumer cfg.Durable on
// cfg.Stream that calls handle for each message. It sends nothing; Start (or Run) connects and
// begins consuming. handle must be safe for concurrent use when Concurrency is above 1.
func NewConsumer(cfg ConsumerConfig, handle func(ctx context.Context, m *outbox.Message) error) (*Consumer, error) {
	if handle == nil {
		return nil, &outbox.ConfigError{Component: "nats consumer", Field: "handle", Problem: "is nil"}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Consumer{
		cfg: cfg, handle: handle,
		log:      cfg.Logger.With(zap.String("component", "nats consumer"), zap.String("stream", cfg.Stream), zap.String("durable", cfg.Durable)),
		slots:    make(chan struct{}, 2*cfg.Concurrency),
		handlers: make(chan struct{}, cfg.Concurrency),
		done:     make(chan struct{}),
	}, nil
}

// Start connects (unless the config has a Conn), looks the durable consumer up, checks that it
// is a pull consumer with explicit acks, and starts fetching in the background; it does not
// block on messages. ctx bounds only this start-up work: the consumer runs until Stop. A
// server that cannot be reached, and a stream or durable consumer that does not exist, fail
// Start with an error marked outbox.Unavailable: starting again later can succeed.
func (c *Consumer) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return ErrConsumerStarted
	}
	nc, own := c.cfg.Conn, false
	if nc == nil {
		var err error
		if nc, err = connect(ctx, c.cfg.transportConfig()); err != nil {
			return fmt.Errorf("nats consumer: start: %w", err)
		}
		own = true
	}
	closeOwn := func() {
		if own {
			_ = nc.FlushTimeout(c.cfg.AckTimeout) // the last naks and terms reach the server
			nc.Close()
		}
	}
	cons, extend, err := c.lookup(ctx, nc)
	if err != nil {
		closeOwn()
		return fmt.Errorf("nats consumer: start: %w", err)
	}
	c.started, c.nc, c.ownNC, c.cons, c.extend = true, nc, own, cons, extend
	pollCtx, stopPoll := context.WithCancel(context.Background())
	workCtx, stopWork := context.WithCancel(context.Background())
	c.stopPoll, c.stopWork = stopPoll, stopWork
	c.wg.Add(1)
	go c.poll(pollCtx, workCtx)
	go func() {
		c.wg.Wait()
		closeOwn()
		close(c.done)
	}()
	c.log.Info("consuming", zap.Int("concurrency", c.cfg.Concurrency), zap.Duration("extend_interval", extend))
	return nil
}

// lookup finds the durable consumer and returns it with the interval of its InProgress marks.
func (c *Consumer) lookup(ctx context.Context, nc *natsgo.Conn) (jetstream.Consumer, time.Duration, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, 0, fmt.Errorf("jetstream: %w", err)
	}
	cons, err := js.Consumer(ctx, c.cfg.Stream, c.cfg.Durable)
	if err != nil {
		what := fmt.Errorf("durable consumer %s on stream %s: %w", c.cfg.Durable, c.cfg.Stream, err)
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, natsgo.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) ||
			errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, natsgo.ErrConnectionClosed) {
			return nil, 0, outbox.Unavailable(what)
		}
		return nil, 0, what
	}
	info := cons.CachedInfo().Config
	switch {
	case info.DeliverSubject != "":
		return nil, 0, fmt.Errorf("durable consumer %s on stream %s is a push consumer (DeliverSubject %q); create a pull consumer", c.cfg.Durable, c.cfg.Stream, info.DeliverSubject)
	case info.AckPolicy != jetstream.AckExplicitPolicy:
		return nil, 0, fmt.Errorf("durable consumer %s on stream %s acknowledges with %s; the consumer needs AckExplicit, so that a failed message is redelivered on its own", c.cfg.Durable, c.cfg.Stream, info.AckPolicy)
	}
	ackWait := info.AckWait
	if ackWait == 0 {
		ackWait = 30 * time.Second // the server's default
	}
	extend := c.cfg.ExtendInterval
	if extend == 0 {
		extend = ackWait / 2
	}
	if extend >= ackWait {
		c.log.Warn("ExtendInterval is not below the durable consumer's AckWait: a slow handler's message is redelivered before it is marked in progress",
			zap.Duration("extend_interval", extend), zap.Duration("ack_wait", ackWait))
	}
	return cons, extend, nil
}

// Stop stops fetching and waits for the handlers in flight to finish and their messages to be
// acknowledged. When ctx ends first, it cancels the handlers' contexts (their messages are
// nak'ed and delivered again) and returns ctx's error without waiting further; a later Stop
// waits for them again. Messages the server sent to a pull request Stop cancelled, if any,
// come back when their AckWait ends. Stop on a consumer never started returns nil.
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
		c.stopWork() // nothing runs under it any more; release the context
		return nil
	case <-ctx.Done():
		c.stopWork()
		return fmt.Errorf("nats consumer: stop: handlers still running: %w", ctx.Err())
	}
}

// Run starts the consumer and consumes until ctx ends, then stops it, waiting up to
// DefaultStopTimeout for the handlers in flight. It returns nil after a clean stop.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), DefaultStopTimeout)
	defer cancel()
	return c.Stop(stopCtx)
}

// Stats returns a snapshot of the counters.
func (c *Consumer) Stats() ConsumerStats {
	s := &c.stats
	return ConsumerStats{
		Received: s.received.Load(), Handled: s.handled.Load(), Failed: s.failed.Load(), Malformed: s.malformed.Load(),
		Acked: s.acked.Load(), AckErrors: s.ackErrors.Load(), Naked: s.naked.Load(), NakErrors: s.nakErrors.Load(),
		Extended: s.extended.Load(), ExtendErrors: s.extendErrors.Load(), FetchErrors: s.fetchErrors.Load(),
		InFlight: s.inFlight.Load(),
	}
}

// poll pulls messages while pollCtx lasts, never more than there are free handler slots, and
// starts a handler for each as it arrives.
func (c *Consumer) poll(pollCtx, workCtx context.Context) {
	defer c.wg.Done()
	backoff := time.Duration(0)
	// A pull request waits for Concurrency free slots: the handlers then still hold up to
	// Concurrency messages, so they stay busy while the request brings the next ones, and
	// requests are not spent on one message each.
	want := min(c.cfg.Concurrency, maxFetchBatch)
	for {
		n := 0
		for n < want {
			select {
			case c.slots <- struct{}{}:
				n++
			case <-pollCtx.Done():
				c.freeSlots(n)
				return
			}
		}
	reserve:
		for n < min(cap(c.slots), maxFetchBatch) {
			select {
			case c.slots <- struct{}{}:
				n++
			default:
				break reserve
			}
		}
		got, err := c.fetch(pollCtx, workCtx, n)
		c.freeSlots(n - got)
		if pollCtx.Err() != nil {
			return
		}
		if err != nil {
			c.stats.fetchErrors.Add(1)
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			c.log.Warn("fetch failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			select {
			case <-time.After(backoff):
			case <-pollCtx.Done():
				return
			}
			continue
		}
		backoff = 0
	}
}

// fetch sends one pull request for n messages and starts a handler for each message it brings,
// each on one of the n reserved slots. It returns how many slots the handlers took.
func (c *Consumer) fetch(pollCtx, workCtx context.Context, n int) (int, error) {
	fctx, cancel := context.WithTimeout(pollCtx, c.cfg.FetchWait)
	defer cancel()
	batch, err := c.cons.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		return 0, fmt.Errorf("nats consumer: fetch: %w", err)
	}
	got := 0
	for m := range batch.Messages() {
		got++
		c.stats.received.Add(1)
		c.wg.Add(1)
		go c.work(pollCtx, workCtx, m)
	}
	switch err := batch.Error(); {
	case err == nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, natsgo.ErrTimeout), errors.Is(err, jetstream.ErrNoMessages):
		return got, nil
	default:
		return got, fmt.Errorf("nats consumer: fetch: %w", err)
	}
}

func (c *Consumer) freeSlots(n int) {
	for range n {
		<-c.slots
	}
}

// work handles one message on its slot and frees the slot when done.
func (c *Consumer) work(pollCtx, workCtx context.Context, m jetstream.Msg) {
	defer c.wg.Done()
	defer func() { <-c.slots }()

	log := &msgLog{log: c.log, m: m}
	msg, err := decodeReceived(m.Data(), m.Headers(), c.cfg.RawPayload)
	if err != nil {
		c.stats.malformed.Add(1)
		log.write(zap.ErrorLevel, "malformed message terminated: no redelivery can decode it", err)
		if err := m.Term(); err != nil {
			c.stats.nakErrors.Add(1)
			log.write(zap.WarnLevel, "term failed; the message comes back when its AckWait ends", err)
		}
		return
	}
	log.msg = msg
	// Marked in progress from now on, so a message waiting for a free handler keeps its
	// AckWait too.
	stopExtending := c.keepInProgress(m, log)
	acquired := false
	select {
	case c.handlers <- struct{}{}:
		acquired = true
	case <-pollCtx.Done():
	}
	if pollCtx.Err() != nil {
		if acquired {
			<-c.handlers
		}
		stopExtending()
		c.stats.failed.Add(1)
		c.nak(m, log) // stopping: hand it back for another consumer, or the next start
		return
	}
	c.stats.inFlight.Add(1)
	hctx, cancel := context.WithCancel(workCtx)
	if c.cfg.HandlerTimeout > 0 {
		hctx, cancel = context.WithTimeout(workCtx, c.cfg.HandlerTimeout)
	}
	err = c.call(hctx, msg)
	cancel()
	stopExtending()
	<-c.handlers
	c.stats.inFlight.Add(-1)
	if err != nil {
		c.stats.failed.Add(1)
		log.write(zap.WarnLevel, "handler failed; the message is left to redelivery and the consumer's MaxDeliver", err)
		c.nak(m, log)
		return
	}
	c.stats.handled.Add(1)

	// Not cancelled by Stop: the work is done, and a confirmed ack spares a redelivery.
	actx, acancel := context.WithTimeout(context.Background(), c.cfg.AckTimeout)
	err = m.DoubleAck(actx)
	acancel()
	if err != nil {
		c.stats.ackErrors.Add(1)
		log.write(zap.WarnLevel, "ack not confirmed; the message may be delivered again", err)
		return
	}
	c.stats.acked.Add(1)
	log.write(zap.DebugLevel, "handled", nil)
}

// nak hands a failed message back to JetStream as NakDelay says.
func (c *Consumer) nak(m jetstream.Msg, log *msgLog) {
	var err error
	switch d := c.cfg.NakDelay; {
	case d < 0:
		return // AckWait expires, and the server redelivers
	case d == 0:
		err = m.Nak()
	default:
		err = m.NakWithDelay(d)
	}
	if err != nil {
		c.stats.nakErrors.Add(1)
		log.write(zap.WarnLevel, "nak failed; the message comes back when its AckWait ends", err)
		return
	}
	c.stats.naked.Add(1)
}

// call runs the handler, turning a panic into an error so one bad message cannot stop the
// consumer.
func (c *Consumer) call(ctx context.Context, m *outbox.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("nats consumer: handler panicked: %v", r)
		}
	}()
	return c.handle(ctx, m)
}

// keepInProgress marks the message in progress every extend interval while its handler runs,
// until the returned func is called.
func (c *Consumer) keepInProgress(m jetstream.Msg, log *msgLog) (stop func()) {
	if c.extend < 0 {
		return func() {}
	}
	quit, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(c.extend)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			if err := m.InProgress(); err != nil {
				c.stats.extendErrors.Add(1)
				log.write(zap.WarnLevel, "marking the message in progress failed", err)
				continue
			}
			c.stats.extended.Add(1)
		}
	}()
	return func() {
		close(quit)
		<-exited
	}
}

// msgLog logs about one message, building its fields (stream sequence, delivery count, ID,
// type) only when an entry is written: most messages are handled without a word.
type msgLog struct {
	log *zap.Logger
	m   jetstream.Msg
	msg *outbox.Message // nil until decoded
}

func (l *msgLog) write(level zapcore.Level, text string, err error) {
	ce := l.log.Check(level, text)
	if ce == nil {
		return
	}
	fields := make([]zap.Field, 0, 5)
	if md, mdErr := l.m.Metadata(); mdErr == nil {
		fields = append(fields, zap.Uint64("stream_seq", md.Sequence.Stream), zap.Uint64("delivered", md.NumDelivered))
	}
	if l.msg != nil {
		fields = append(fields, zap.String("id", l.msg.ID), zap.String("type", l.msg.Type))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	ce.Write(fields...)
}
