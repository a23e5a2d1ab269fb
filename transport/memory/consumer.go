package memory

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
	"go.uber.org/zap"
)

// ErrConsumerStopped is what a stopping consumer's subscription answers to a delivery it no
// longer takes: the message's publish fails, and the relay publishes it again later.
var ErrConsumerStopped = errors.New("memory consumer: stopped")

// DefaultConsumerConcurrency is how many handlers a Consumer runs at once by default.
const DefaultConsumerConcurrency = 1

// ConsumerConfig configures a Consumer. The zero value of every optional field means its
// default.
type ConsumerConfig struct {
	// Transport is the transport whose published messages the consumer handles. Required.
	Transport *Transport
	// Handler is called for each message, with a copy of it. Required.
	Handler consume.Handler
	// Concurrency is how many handlers run at once, across concurrent Publish calls.
	// Default 1 (DefaultConsumerConcurrency).
	Concurrency int
	// Logger receives the consumer's logs. Default zap.NewNop().
	Logger *zap.Logger
}

// Validate names the first invalid field.
func (c ConsumerConfig) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "memory consumer", Field: field, Problem: problem}
	}
	switch {
	case c.Transport == nil:
		return bad("Transport", "is nil")
	case c.Handler == nil:
		return bad("Handler", "is nil")
	case c.Concurrency < 0:
		return bad("Concurrency", "is negative")
	}
	return nil
}

// Consumer is the in-process counterpart of a broker consumer, built on the same runtime
// (package consume) as the SQS, Kafka, NATS and RabbitMQ ones, so tests and the quickstart
// exercise the same handler code. It subscribes to a Transport: each published message is
// handed to the handler (a copy of it) inside Publish. A handler error or panic fails that
// message's publish, so the relay publishes it again: the relay's retry and backoff play the
// broker's redelivery (the runtime's nack delay is not used), and duplicates arise exactly as
// they do with a real broker when an ack is lost. Nothing is malformed here, so nothing is
// rejected.
//
// Unlike a queue, the transport keeps nothing for an absent consumer: messages published before
// Start or after Stop never reach it.
type Consumer struct {
	*consume.Consumer
}

// ConsumerStats is a snapshot of a consumer's counters.
type ConsumerStats = consume.Stats

// NewConsumer returns a consumer of cfg.Transport's messages that calls cfg.Handler for each.
// Start subscribes. ctx is unused: the memory transport has nothing to connect to.
func NewConsumer(_ context.Context, cfg ConsumerConfig) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConsumerConcurrency
	}
	a := &adapter{tr: cfg.Transport, in: make(chan consume.Delivery), stopping: make(chan struct{})}
	c, err := consume.New(a, consume.Config{
		Name: "memory consumer", Handler: cfg.Handler, Concurrency: cfg.Concurrency, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &Consumer{c}, nil
}

// adapter hands the messages of Publish calls to the runtime and blocks each call until its
// message is settled: Ack makes it succeed, Nack fails it with the handler's error.
type adapter struct {
	tr       *Transport
	in       chan consume.Delivery
	once     sync.Once
	stopping chan struct{} // closed when Stop begins: deliveries are refused
	unsub    func()
}

func (a *adapter) Open(context.Context) error {
	a.unsub = a.tr.Subscribe(a.deliver)
	return nil
}

// Receive waits for a Publish call's message. Its context ends only when Stop begins, so that
// is when the subscription starts refusing.
func (a *adapter) Receive(ctx context.Context, _ int) ([]consume.Delivery, error) {
	select {
	case d := <-a.in:
		return []consume.Delivery{d}, nil
	case <-ctx.Done():
		a.stop()
		return nil, ctx.Err()
	}
}

func (a *adapter) Close(context.Context) error {
	a.stop()
	return nil
}

func (a *adapter) stop() {
	a.once.Do(func() {
		close(a.stopping)
		if a.unsub != nil {
			a.unsub()
		}
	})
}

// deliver is the subscription: it runs inside Publish, with the publisher's context, which
// bounds the handler too.
func (a *adapter) deliver(ctx context.Context, m *outbox.Message) error {
	s := settler{result: make(chan error, 1)}
	select {
	case <-a.stopping:
		return ErrConsumerStopped
	default:
	}
	select {
	case a.in <- consume.Delivery{Message: m, Ref: m.ID, Context: ctx, Settler: s}:
	case <-a.stopping:
		return ErrConsumerStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-s.result // the runtime settles every delivery it received, stop or not
}

type settler struct{ result chan error }

func (s settler) Ack(context.Context) error { s.result <- nil; return nil }

func (s settler) Nack(_ context.Context, _ time.Duration, cause error) error {
	s.result <- cause
	return nil
}

func (s settler) Reject(_ context.Context, cause error) error {
	s.result <- outbox.Permanent(cause)
	return nil
}
