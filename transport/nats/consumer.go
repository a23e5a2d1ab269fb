package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
	"go.uber.org/zap"
)

// ErrConsumerStarted is returned by Start on a consumer that was started before: a consumer
// runs once; make a new one to consume again.
var ErrConsumerStarted = outbox.ErrConsumerStarted

// maxFetchBatch bounds the messages one pull request asks for: nats.go buffers a request's
// messages in channels sized by it, and a larger Concurrency is served by successive requests.
const maxFetchBatch = 256

// extendCheck is how often a running handler's message is looked at when ExtendInterval is
// left to its default: the default depends on the durable consumer's AckWait, known only once
// Start looked it up, so the runtime asks often and Extend marks the message when it is due.
const extendCheck = 250 * time.Millisecond

// Consumer reads the messages of a durable JetStream pull consumer and hands each to a handler,
// Concurrency at a time, on the consumer runtime of package consume. Acknowledgement is
// explicit and per message:
//
//   - the handler returns nil: the message is acknowledged (Ack, confirmed by the server);
//   - the handler fails (returns an error, panics, or its context ends): the message is
//     nak'ed (with Backoff set, NakWithDelay of the backoff's delay; else as NakDelay says: at
//     once, after a delay, or not at all so that AckWait expires), and JetStream delivers it
//     again; a message a stopping consumer gives back is nak'ed at once;
//   - the body or headers cannot be decoded: the message is terminated (Term), since no
//     redelivery can decode it; the server emits a MSG_TERMINATED advisory for it.
//
// The durable consumer's MaxDeliver bounds the deliveries of a failing message: after the last
// one JetStream stops delivering it and publishes a MAX_DELIVERIES advisory
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
// With KeepKeyOrder, the messages of one Key are handled in stream order, each after the one
// before it was settled, and nothing of a Key overtakes a message whose handler failed (see
// ConsumerConfig.KeepKeyOrder for what the durable consumer needs).
//
// The handler sees the message as the Transport published it: ID, Type, Payload, Result and
// CreatedAt from the envelope, Key from outbox.key, every other header in Headers (traceparent
// and tracestate among them), JetStream's Nats-* headers left out.
type Consumer struct {
	*consume.Consumer
	a *adapter
}

// ConsumerStats is a snapshot of a consumer's counters: Acked counts acks the server
// confirmed, Requeued the naks, Rejected the terminated messages, Extended the InProgress
// marks, ReceiveErrors the pull requests that failed.
type ConsumerStats = consume.Stats

// NewConsumer validates cfg and returns a consumer of the durable pull consumer cfg.Durable on
// cfg.Stream that calls cfg.Handler for each message. It sends nothing; Start (or Run)
// connects and begins consuming. The handler must be safe for concurrent use when Concurrency
// is above 1.
//
// Start connects (unless the config has a Conn), looks the durable consumer up and checks that
// it is a pull consumer with explicit acks. A server that cannot be reached, and a stream or
// durable consumer that does not exist, fail Start with an error marked outbox.Unavailable:
// starting again later can succeed. Stop closes only the connection Start made.
func NewConsumer(_ context.Context, cfg ConsumerConfig) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	a := &adapter{cfg: cfg, log: cfg.Logger.With(zap.String("stream", cfg.Stream), zap.String("durable", cfg.Durable))}
	rc := consume.Config{
		Name: "nats consumer", Handler: cfg.Handler, RawPayload: cfg.RawPayload,
		Concurrency: cfg.Concurrency, ReceiveBatch: min(cfg.Concurrency, maxFetchBatch), Pollers: 1,
		HandlerTimeout: cfg.HandlerTimeout, ExtendInterval: cfg.ExtendInterval, Backoff: cfg.Backoff,
		StopTimeout: DefaultStopTimeout, SettleTimeout: cfg.AckTimeout, Logger: a.log,
	}
	if cfg.ExtendInterval == 0 {
		rc.ExtendInterval = extendCheck
	}
	if cfg.KeepKeyOrder {
		// The durable holds one unacked message (MaxAckPending 1): a pull request for more
		// would only wait for messages the server cannot send before this one is acked.
		rc.Concurrency, rc.ReceiveBatch = 1, 1
	}
	c, err := consume.New(a, rc)
	if err != nil {
		return nil, err
	}
	return &Consumer{Consumer: c, a: a}, nil
}

// adapter is the runtime's view of the durable consumer.
type adapter struct {
	cfg   ConsumerConfig
	log   *zap.Logger
	nc    *natsgo.Conn
	ownNC bool
	cons  jetstream.Consumer
	// extend is how long a running handler's message goes without an InProgress mark.
	extend time.Duration
}

// Open connects (unless the config has a Conn) and looks the durable consumer up. When the
// lookup fails it closes the connection it made: Start may be called again.
func (a *adapter) Open(ctx context.Context) error {
	nc, own := a.cfg.Conn, false
	if nc == nil {
		var err error
		if nc, err = connect(ctx, a.cfg.Connection, a.cfg.Logger); err != nil {
			return err
		}
		own = true
	}
	a.nc, a.ownNC = nc, own
	if err := a.lookup(ctx); err != nil {
		if own {
			nc.Close()
		}
		a.nc = nil
		return err
	}
	a.log.Info("nats consumer: durable consumer found", zap.Duration("extend_interval", a.extend), zap.Bool("keep_key_order", a.cfg.KeepKeyOrder))
	return nil
}

// lookup finds the durable consumer, checks it, and sets the interval of the InProgress marks.
func (a *adapter) lookup(ctx context.Context) error {
	js, err := jetstream.New(a.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	cons, err := js.Consumer(ctx, a.cfg.Stream, a.cfg.Durable)
	if err != nil {
		what := fmt.Errorf("durable consumer %s on stream %s: %w", a.cfg.Durable, a.cfg.Stream, err)
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, natsgo.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) ||
			errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, natsgo.ErrConnectionClosed) {
			return outbox.Unavailable(what)
		}
		return what
	}
	info := cons.CachedInfo().Config
	switch {
	case info.DeliverSubject != "":
		return fmt.Errorf("durable consumer %s on stream %s is a push consumer (DeliverSubject %q); create a pull consumer", a.cfg.Durable, a.cfg.Stream, info.DeliverSubject)
	case info.AckPolicy != jetstream.AckExplicitPolicy:
		return fmt.Errorf("durable consumer %s on stream %s acknowledges with %s; the consumer needs AckExplicit, so that a failed message is redelivered on its own", a.cfg.Durable, a.cfg.Stream, info.AckPolicy)
	case a.cfg.KeepKeyOrder && info.MaxAckPending != 1:
		return fmt.Errorf("durable consumer %s on stream %s has MaxAckPending %d; KeepKeyOrder needs 1, so that JetStream holds the next messages until a failed one is acked", a.cfg.Durable, a.cfg.Stream, info.MaxAckPending)
	}
	ackWait := info.AckWait
	if ackWait == 0 {
		ackWait = 30 * time.Second // the server's default
	}
	a.extend = a.cfg.ExtendInterval
	if a.extend == 0 {
		a.extend = ackWait / 2
	}
	if a.extend >= ackWait {
		a.log.Warn("nats consumer: ExtendInterval is not below the durable consumer's AckWait: a slow handler's message is redelivered before it is marked in progress",
			zap.Duration("extend_interval", a.extend), zap.Duration("ack_wait", ackWait))
	}
	a.cons = cons
	return nil
}

// Close flushes the last acks and naks to the server and closes the connection Open made; the
// server redelivers what was not acked when its AckWait ends.
func (a *adapter) Close(context.Context) error {
	if a.nc != nil && a.ownNC {
		_ = a.nc.FlushTimeout(a.cfg.AckTimeout)
		a.nc.Close()
	}
	return nil
}

// Receive asks for max messages with a pull request that takes only what the stream has now;
// when it has none (or max is 1), it waits up to FetchWait for one message, again until one
// comes or ctx ends. A request never waits with messages in hand: those are the handlers' at
// once.
func (a *adapter) Receive(ctx context.Context, max int) ([]consume.Delivery, error) {
	for {
		if max > 1 { // a request for one returns with its message: it need not skip the wait
			ds, err := a.fetch(ctx, max, false)
			if len(ds) > 0 || err != nil || ctx.Err() != nil {
				return ds, err
			}
		}
		ds, err := a.fetch(ctx, 1, true)
		if len(ds) > 0 || err != nil || ctx.Err() != nil {
			return ds, err
		}
	}
}

func (a *adapter) fetch(ctx context.Context, n int, wait bool) ([]consume.Delivery, error) {
	fctx, cancel := context.WithTimeout(ctx, a.cfg.FetchWait)
	defer cancel()
	var batch jetstream.MessageBatch
	var err error
	if wait {
		batch, err = a.cons.Fetch(n, jetstream.FetchContext(fctx))
	} else {
		batch, err = a.cons.FetchNoWait(n)
	}
	if err != nil {
		return nil, fmt.Errorf("nats consumer: fetch: %w", err)
	}
	var ds []consume.Delivery
	for m := range batch.Messages() {
		ds = append(ds, a.delivery(m))
	}
	switch err := batch.Error(); {
	case err == nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, natsgo.ErrTimeout), errors.Is(err, jetstream.ErrNoMessages):
		return ds, nil
	default:
		return ds, fmt.Errorf("nats consumer: fetch: %w", err)
	}
}

// delivery turns a fetched message into the runtime's: its headers but JetStream's own
// (Nats-*), which the server sets for the stream, not for the consumer; its delivery count;
// with KeepKeyOrder its Key as the group.
func (a *adapter) delivery(m jetstream.Msg) consume.Delivery {
	d := consume.Delivery{Body: m.Data(), Settler: &settler{a: a, m: m, marked: time.Now()}}
	if md, err := m.Metadata(); err == nil {
		d.Attempt = int(md.NumDelivered)
		d.Ref = "stream_seq " + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	h := m.Headers()
	for name, vs := range h {
		if len(vs) == 0 || len(name) >= 5 && strings.EqualFold(name[:5], "Nats-") {
			continue
		}
		if d.Headers == nil {
			d.Headers = make(map[string]string, len(h))
		}
		d.Headers[name] = vs[0] // the transport sends one value per name
	}
	if a.cfg.KeepKeyOrder {
		d.Group = d.Headers[HeaderKey]
	}
	return d
}

// settler settles one fetched message.
type settler struct {
	a  *adapter
	m  jetstream.Msg
	mu sync.Mutex
	// marked is when the message's AckWait last started: its delivery or its last InProgress.
	marked time.Time
}

// Ack acknowledges the message and waits for the server to confirm it.
func (s *settler) Ack(ctx context.Context) error {
	if err := s.m.DoubleAck(ctx); err != nil {
		return fmt.Errorf("nats consumer: ack: %w", err)
	}
	return nil
}

// Nack naks a message a stopping consumer gives back at once; a failed one after the backoff's
// delay when Backoff is set, else as NakDelay says.
func (s *settler) Nack(_ context.Context, delay time.Duration, cause error) error {
	var err error
	switch nd := s.a.cfg.NakDelay; {
	case errors.Is(cause, consume.ErrStopped):
		err = s.m.Nak()
	case s.a.cfg.Backoff != (outbox.Backoff{}):
		if delay > 0 {
			err = s.m.NakWithDelay(delay)
		} else {
			err = s.m.Nak()
		}
	case nd < 0:
		return nil // AckWait expires, and the server redelivers
	case nd == 0:
		err = s.m.Nak()
	default:
		err = s.m.NakWithDelay(nd)
	}
	if err != nil {
		return fmt.Errorf("nats consumer: nak: %w", err)
	}
	return nil
}

// Reject terminates the message: no redelivery can decode it.
func (s *settler) Reject(context.Context, error) error {
	if err := s.m.Term(); err != nil {
		return fmt.Errorf("nats consumer: term: %w", err)
	}
	return nil
}

// Extend marks the message in progress, which restarts its AckWait: at every call when
// ExtendInterval is set, else once half the AckWait passed since it was delivered or last
// marked.
func (s *settler) Extend(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.a.cfg.ExtendInterval == 0 && time.Since(s.marked) < s.a.extend {
		return nil // the runtime asks every extendCheck; the default interval has not passed
	}
	if err := s.m.InProgress(); err != nil {
		return fmt.Errorf("nats consumer: in progress: %w", err)
	}
	s.marked = time.Now()
	return nil
}
