package rabbitmq

import (
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
	"go.uber.org/zap"
)

// Consumer defaults and limits.
const (
	// DefaultConsumerConcurrency is how many handlers a Consumer runs at once by default, and
	// so its prefetch (basic.qos) by default.
	DefaultConsumerConcurrency = 8
	// MaxConsumerConcurrency bounds Concurrency: the prefetch count is a 16-bit AMQP field.
	MaxConsumerConcurrency = 65535
	// DefaultConsumerStopTimeout bounds Run's graceful stop once its context ends.
	DefaultConsumerStopTimeout = 30 * time.Second
	// DefaultConsumerConnectionName names a Consumer's connection in the broker's management UI.
	DefaultConsumerConnectionName = "outbox consumer"
	// DefaultCancelTimeout bounds the wait for the broker's basic.cancel-ok when a consumer
	// closes; past it the connection is closed without it.
	DefaultCancelTimeout = 2 * time.Second
)

// ConsumerConfig configures a Consumer. The zero value of every field but URL (or Conn), Queue
// and Handler means its documented default.
type ConsumerConfig struct {
	// Connection says how to reach the broker, as a Transport's Config does: URL (required
	// unless Conn is set) or Conn, TLS and its files, KeyPassword, DialTimeout, Heartbeat,
	// WriteTimeout, ReconnectMin and ReconnectMax (the wait before dialing again after the
	// connection dropped or a dial failed), and ConnectionName (default "outbox consumer",
	// DefaultConsumerConnectionName).
	Connection

	// Queue is the queue to consume. Required. It must exist: the consumer never declares it
	// (its arguments, such as x-queue-type, x-delivery-limit and x-dead-letter-exchange, are the
	// service's decision).
	Queue string `json:"queue"`
	// Handler is called for each message; nil acknowledges it, an error requeues it. Required.
	Handler consume.Handler `json:"-"`

	// RawPayload reads bodies as the bare payload, with the ID in the message-id property and
	// the Type in the type property, as a Transport with RawPayload sends them. Default false:
	// bodies are envelopes, decoded with backend.DecodeEnvelope.
	RawPayload bool `json:"raw_payload,omitempty"`
	// Concurrency is how many handlers run at once; it is also the prefetch count (basic.qos),
	// so the broker never hands the consumer a message it has no handler for. Default 8
	// (DefaultConsumerConcurrency); at most 65535.
	Concurrency int `json:"concurrency,omitempty"`
	// HandlerTimeout bounds each handler call; its context is cancelled after it. Default none.
	HandlerTimeout time.Duration `json:"handler_timeout,omitempty"`
	// Logger receives the consumer's logs. Default zap.NewNop().
	Logger *zap.Logger `json:"-"`
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	c.Connection = c.Connection.withDefaults(DefaultConsumerConnectionName)
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConsumerConcurrency
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Validate names the first missing or wrong field. It never repeats a secret.
func (c ConsumerConfig) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "rabbitmq consumer", Field: field, Problem: problem}
	}
	if err := c.validate(); err != nil { // the Connection's
		return err
	}
	switch {
	case c.Handler == nil:
		return bad("Handler", "is nil")
	case c.Queue == "":
		return bad("Queue", "is empty")
	case len(c.Queue) > maxShortString:
		return bad("Queue", fmt.Sprintf("is %d bytes, above the AMQP limit of %d", len(c.Queue), maxShortString))
	case c.Concurrency < 0:
		return bad("Concurrency", "is negative")
	case c.Concurrency > MaxConsumerConcurrency:
		return bad("Concurrency", fmt.Sprintf("%d is above %d, the largest AMQP prefetch count", c.Concurrency, MaxConsumerConcurrency))
	case c.HandlerTimeout < 0:
		return bad("HandlerTimeout", "is negative")
	}
	return nil
}

// Format prints c as %v does, under every verb, as Config.Format does and for its reason.
func (c ConsumerConfig) Format(f fmt.State, verb rune) {
	type plain ConsumerConfig // the fields, without this method
	type ConsumerConfig plain // under its own name, for %#v
	fmt.Fprintf(f, fmt.FormatString(f, 'v'), ConsumerConfig(c))
}
