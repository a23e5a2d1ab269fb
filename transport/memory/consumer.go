package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
)

// ErrConsumerStopped is what a stopping consumer's subscription answers to a delivery it no
// longer takes: the message's publish fails, and the relay publishes it again later.
var ErrConsumerStopped = errors.New("memory consumer: stopped")

// ErrConsumerStarted is returned by Start on a consumer that was started before.
var ErrConsumerStarted = errors.New("memory consumer: already started")

// DefaultConsumerConcurrency is how many handlers a Consumer runs at once by default.
const DefaultConsumerConcurrency = 1

// ConsumerConfig configures a Consumer. The zero value of every field means its default.
type ConsumerConfig struct {
	// Concurrency is how many handlers run at once, across concurrent Publish calls.
	// Default 1 (DefaultConsumerConcurrency).
	Concurrency int
	// Logger receives the consumer's logs. Default zap.NewNop().
	Logger *zap.Logger
}

// Validate names the first invalid field.
func (c ConsumerConfig) Validate() error {
	if c.Concurrency < 0 {
		return &outbox.ConfigError{Component: "memory consumer", Field: "Concurrency", Problem: "is negative"}
	}
	return nil
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConsumerConcurrency
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Consumer is the in-process counterpart of a broker consumer, with the same shape as the SQS
// one (NewConsumer, Start, Stop, Run, Stats), so tests and the quickstart exercise the same
// handler code. It subscribes to a Transport: each published message is handed to the handler
// (a copy of it) inside Publish. A handler error or panic fails that message's publish, so the
// relay publishes it again: the relay's retry plays the broker's redelivery, and duplicates
// arise exactly as they do with a real broker when an ack is lost.
//
// Unlike a queue, the transport keeps nothing for an absent consumer: messages published before
// Start or after Stop never reach it.
type Consumer struct {
	tr     *Transport
	cfg    ConsumerConfig
	handle func(ctx context.Context, m *outbox.Message) error
	log    *zap.Logger
	slots  chan struct{}

	mu          sync.Mutex
	started     bool
	stopping    atomic.Bool
	unsubscribe func()
	work        context.Context // cancelled when Stop gives up waiting
	cancelWork  context.CancelFunc
	wg          sync.WaitGroup
	done        chan struct{}
	stopOnce    sync.Once

	received, handled, failed, inFlight atomic.Int64
}

// ConsumerStats is a snapshot of a consumer's counters.
type ConsumerStats struct {
	// Received counts deliveries handed to the consumer (redeliveries included).
	Received int64
	// Handled counts handler calls that returned nil.
	Handled int64
	// Failed counts handler calls that returned an error or panicked, and deliveries refused
	// while stopping; their publishes failed, so the relay sends them again.
	Failed int64
	// InFlight is how many handlers run now.
	InFlight int64
}

// NewConsumer returns a consumer of t's messages that calls handle for each. Start subscribes.
func NewConsumer(t *Transport, cfg ConsumerConfig, handle func(ctx context.Context, m *outbox.Message) error) (*Consumer, error) {
	switch {
	case t == nil:
		return nil, &outbox.ConfigError{Component: "memory consumer", Field: "transport", Problem: "is nil"}
	case handle == nil:
		return nil, &outbox.ConfigError{Component: "memory consumer", Field: "handle", Problem: "is nil"}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	work, cancel := context.WithCancel(context.Background())
	return &Consumer{
		tr: t, cfg: cfg, handle: handle, log: cfg.Logger.With(zap.String("component", "memory consumer")),
		slots: make(chan struct{}, cfg.Concurrency), work: work, cancelWork: cancel, done: make(chan struct{}),
	}, nil
}

// Start subscribes the consumer to its transport. It does not block.
func (c *Consumer) Start(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return ErrConsumerStarted
	}
	c.started = true
	c.unsubscribe = c.tr.Subscribe(c.deliver)
	return nil
}

// Stop unsubscribes, refuses further deliveries (their publishes fail and are retried) and
// waits for the handlers in flight. When ctx ends first it cancels their contexts and returns
// ctx's error; a later Stop waits again. Stop on a consumer never started returns nil.
func (c *Consumer) Stop(ctx context.Context) error {
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if !started {
		c.cancelWork()
		return nil
	}
	c.stopOnce.Do(func() {
		// Under mu, so that no delivery joins wg once Wait may have begun.
		c.mu.Lock()
		c.stopping.Store(true)
		c.mu.Unlock()
		c.unsubscribe()
		go func() {
			c.wg.Wait()
			close(c.done)
		}()
	})
	select {
	case <-c.done:
		c.cancelWork()
		return nil
	case <-ctx.Done():
		c.cancelWork()
		return fmt.Errorf("memory consumer: stop: handlers still running: %w", ctx.Err())
	}
}

// Run starts the consumer, waits for ctx to end and stops it, waiting for its handlers.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return c.Stop(context.Background())
}

// Stats returns a snapshot of the counters.
func (c *Consumer) Stats() ConsumerStats {
	return ConsumerStats{Received: c.received.Load(), Handled: c.handled.Load(), Failed: c.failed.Load(), InFlight: c.inFlight.Load()}
}

// deliver is the subscription: it runs inside Publish, with the publisher's context, which is
// also cancelled when Stop gives up waiting.
func (c *Consumer) deliver(ctx context.Context, m *outbox.Message) error {
	c.received.Add(1)
	c.mu.Lock()
	if c.stopping.Load() {
		c.mu.Unlock()
		c.failed.Add(1)
		return ErrConsumerStopped
	}
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()

	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		c.failed.Add(1)
		return ctx.Err()
	}
	defer func() { <-c.slots }()
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)

	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.work, cancel)
	defer stop()
	if err := c.call(hctx, m.Clone()); err != nil {
		c.failed.Add(1)
		c.log.Warn("handler failed; the message's publish fails and the relay sends it again",
			zap.String("id", m.ID), zap.String("type", m.Type), zap.Error(err))
		return err
	}
	c.handled.Add(1)
	return nil
}

func (c *Consumer) call(ctx context.Context, m *outbox.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("memory consumer: handler panicked: %v", r)
		}
	}()
	return c.handle(ctx, m)
}
