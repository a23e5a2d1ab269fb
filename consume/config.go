package consume

import (
	"time"

	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
)

// Defaults of Config.
const (
	// DefaultConcurrency is how many handlers run at once.
	DefaultConcurrency = 1
	// DefaultReceiveBatch is the most deliveries one Receive call is asked for.
	DefaultReceiveBatch = 1
	// DefaultStopTimeout bounds Run's stop once its context ends.
	DefaultStopTimeout = 30 * time.Second
	// DefaultStopGrace is how long Stop waits, after its context ended and the handlers'
	// contexts were cancelled, for handlers to return before it gives their deliveries back.
	DefaultStopGrace = time.Second
	// DefaultSettleTimeout bounds one Ack, Nack or Reject.
	DefaultSettleTimeout = 10 * time.Second
)

// Config configures the runtime. A transport fills it from its own ConsumerConfig, whose fields
// document the transport's defaults; the zero value of each field here means the default
// stated on it.
type Config struct {
	// Name prefixes errors and names the component in logs, e.g. "sqs consumer". Default
	// "consumer".
	Name string
	// Handler is called for each message. Required.
	Handler Handler
	// RawPayload reads bodies as the bare payload with the ID and Type in the outbox.id and
	// outbox.type headers. Default false: bodies are envelopes (backend.DecodeEnvelope).
	RawPayload bool
	// Concurrency is how many handlers run at once. Default 1 (DefaultConcurrency).
	Concurrency int
	// ReceiveBatch is the most deliveries one Receive call is asked for (never more than the
	// free handler slots). Default 1 (DefaultReceiveBatch).
	ReceiveBatch int
	// Pollers is how many Receive calls may run at once. Default:
	// Concurrency/ReceiveBatch rounded up.
	Pollers int
	// HandlerTimeout bounds each handler call. Default none.
	HandlerTimeout time.Duration
	// ExtendInterval is how often a running handler's delivery is extended, when its Settler
	// is an Extender. Default 0 or negative: never.
	ExtendInterval time.Duration
	// Backoff picks the delay Nack asks for after a failed handler, by Delivery.Attempt (the
	// first failure when the broker does not count). Default outbox.Backoff{} (1s doubling
	// to 5m, jitter 0.2).
	Backoff outbox.Backoff
	// MaxDeliveries rejects, instead of nacking, a delivery whose handler failed on attempt
	// MaxDeliveries or later (by Delivery.Attempt). Default 0: never; the broker's own policy
	// (a redrive count, a max-deliver) ends redeliveries.
	MaxDeliveries int
	// StopTimeout bounds Run's stop once its context ends. Default 30s (DefaultStopTimeout).
	StopTimeout time.Duration
	// StopGrace is how long Stop waits past its context for cancelled handlers to return.
	// Default 1s (DefaultStopGrace).
	StopGrace time.Duration
	// SettleTimeout bounds each Ack, Nack, Reject and Extend. Default 10s
	// (DefaultSettleTimeout).
	SettleTimeout time.Duration
	// Logger receives the consumer's logs. Default zap.NewNop().
	Logger *zap.Logger
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: c.withDefaults().Name, Field: field, Problem: problem}
	}
	switch {
	case c.Handler == nil:
		return bad("Handler", "is nil")
	case c.Concurrency < 0:
		return bad("Concurrency", "is negative")
	case c.ReceiveBatch < 0:
		return bad("ReceiveBatch", "is negative")
	case c.Pollers < 0:
		return bad("Pollers", "is negative")
	case c.HandlerTimeout < 0:
		return bad("HandlerTimeout", "is negative")
	case c.MaxDeliveries < 0:
		return bad("MaxDeliveries", "is negative")
	case c.StopTimeout < 0:
		return bad("StopTimeout", "is negative")
	case c.StopGrace < 0:
		return bad("StopGrace", "is negative")
	case c.SettleTimeout < 0:
		return bad("SettleTimeout", "is negative")
	}
	return c.Backoff.Validate(c.withDefaults().Name, "Backoff")
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "consumer"
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.ReceiveBatch == 0 {
		c.ReceiveBatch = DefaultReceiveBatch
	}
	c.ReceiveBatch = min(c.ReceiveBatch, c.Concurrency)
	if c.Pollers == 0 {
		c.Pollers = (c.Concurrency + c.ReceiveBatch - 1) / c.ReceiveBatch
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.StopGrace == 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = DefaultSettleTimeout
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}
