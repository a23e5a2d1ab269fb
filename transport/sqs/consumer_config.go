package sqs

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
	"go.uber.org/zap"
)

// Consumer defaults and limits.
const (
	// DefaultConsumerConcurrency is how many handlers a Consumer runs at once by default.
	DefaultConsumerConcurrency = 8
	// DefaultReceiveBatch is how many messages one ReceiveMessage call asks for: the SQS maximum.
	DefaultReceiveBatch = 10
	// DefaultWaitTime is the long-polling wait of ReceiveMessage: the SQS maximum, so an idle
	// consumer sends about three requests a minute per poller.
	DefaultWaitTime = 20 * time.Second
	// DefaultVisibilityTimeout is how long a received message stays hidden from other consumers
	// before the consumer extends it (while its handler runs) or SQS redelivers it.
	DefaultVisibilityTimeout = 30 * time.Second
	// DefaultStopTimeout bounds Run's graceful stop once its context ends.
	DefaultStopTimeout = 30 * time.Second
	// MaxWaitTime is the longest long-polling wait SQS accepts.
	MaxWaitTime = 20 * time.Second
	// MaxVisibilityTimeout is the longest visibility timeout SQS accepts.
	MaxVisibilityTimeout = 12 * time.Hour
)

// ConsumerConfig configures a Consumer. Its Connection gives the credentials and endpoint, as in
// Config. The zero value of every other field means its documented default.
type ConsumerConfig struct {
	// QueueURL is the queue to consume: a URL or a name (resolved once with GetQueueUrl).
	// Required.
	QueueURL string
	// Handler is called for each message; nil deletes it, an error leaves it for redelivery.
	// Required.
	Handler consume.Handler `json:"-"`

	// Connection gives the credentials and endpoint, as a Transport's Config does. Default: the
	// default AWS credential chain and the region's endpoint.
	Connection

	// RawPayload reads bodies as the bare payload, with the ID and Type in the outbox.id and
	// outbox.type attributes, as a Transport with RawPayload sends them. Default false: bodies
	// are envelopes, decoded with backend.DecodeEnvelope.
	RawPayload bool
	// Concurrency is how many handlers run at once. Default 8 (DefaultConsumerConcurrency); at
	// most 1000.
	Concurrency int
	// ReceiveBatch is how many messages one ReceiveMessage call asks for, 1 to 10. Pollers never
	// ask for more than there are free handler slots, so no message waits hidden in a buffer.
	// Default 10 (DefaultReceiveBatch).
	ReceiveBatch int
	// Pollers is how many ReceiveMessage calls are in flight at most. Default: enough to fill
	// Concurrency, Concurrency/ReceiveBatch rounded up.
	Pollers int
	// WaitTime is the long-polling wait of each ReceiveMessage call, 0 to 20s (whole seconds).
	// Default 20s (DefaultWaitTime).
	WaitTime time.Duration
	// VisibilityTimeout is asked for on every receive and every extension, 1s to 12h (whole
	// seconds). Default 30s (DefaultVisibilityTimeout).
	VisibilityTimeout time.Duration
	// ExtendInterval is how often the visibility of a message whose handler still runs is
	// extended (to VisibilityTimeout from then), so a slow handler is not raced by a
	// redelivery. Default VisibilityTimeout/2; negative: never extend (a handler slower than
	// VisibilityTimeout then sees its message delivered again, which the inbox absorbs).
	ExtendInterval time.Duration
	// HandlerTimeout bounds each handler call; its context is cancelled after it. Default none.
	HandlerTimeout time.Duration
	// Backoff, when set, makes a failed message visible again after the backoff's delay for
	// its receive count (ChangeMessageVisibility, rounded up to whole seconds, at most 12h).
	// Default zero: it stays hidden until its VisibilityTimeout ends, as SQS redelivers by
	// itself, with no request.
	Backoff outbox.Backoff
	// Logger receives the consumer's logs. Default zap.NewNop().
	Logger *zap.Logger `json:"-"`
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConsumerConcurrency
	}
	if c.ReceiveBatch == 0 {
		c.ReceiveBatch = DefaultReceiveBatch
	}
	if c.Pollers == 0 {
		c.Pollers = (c.Concurrency + c.ReceiveBatch - 1) / c.ReceiveBatch
	}
	if c.WaitTime == 0 {
		c.WaitTime = DefaultWaitTime
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if c.ExtendInterval == 0 {
		c.ExtendInterval = c.VisibilityTimeout / 2
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// transportConfig is the part of c a Transport's Config shares: the connection.
func (c ConsumerConfig) transportConfig() Config {
	return Config{Connection: c.Connection, QueueURL: c.QueueURL, Concurrency: max(c.Concurrency, 1)}
}

// Validate names the first missing or wrong field. It never repeats a secret.
func (c ConsumerConfig) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "sqs consumer", Field: field, Problem: problem}
	}
	if c.QueueURL == "" {
		return bad("QueueURL", "is empty")
	}
	if c.Handler == nil {
		return bad("Handler", "is nil")
	}
	if err := c.Backoff.Validate("sqs consumer", "Backoff"); err != nil {
		return err
	}
	if err := c.transportConfig().Validate(); err != nil {
		return err
	}
	whole := func(d time.Duration) bool { return d%time.Second == 0 }
	switch {
	case c.Concurrency < 0:
		return bad("Concurrency", "is negative")
	case c.Concurrency > 1000:
		return bad("Concurrency", fmt.Sprintf("%d is above 1000", c.Concurrency))
	case c.ReceiveBatch < 0 || c.ReceiveBatch > MaxBatchEntries:
		return bad("ReceiveBatch", fmt.Sprintf("%d is outside 1 to %d", c.ReceiveBatch, MaxBatchEntries))
	case c.Pollers < 0:
		return bad("Pollers", "is negative")
	case c.WaitTime < 0 || c.WaitTime > MaxWaitTime:
		return bad("WaitTime", fmt.Sprintf("%v is outside 0 to %v", c.WaitTime, MaxWaitTime))
	case !whole(c.WaitTime):
		return bad("WaitTime", fmt.Sprintf("%v is not whole seconds, as SQS counts it", c.WaitTime))
	case c.VisibilityTimeout < 0 || c.VisibilityTimeout > MaxVisibilityTimeout:
		return bad("VisibilityTimeout", fmt.Sprintf("%v is outside 1s to %v", c.VisibilityTimeout, MaxVisibilityTimeout))
	case !whole(c.VisibilityTimeout):
		return bad("VisibilityTimeout", fmt.Sprintf("%v is not whole seconds, as SQS counts it", c.VisibilityTimeout))
	case c.HandlerTimeout < 0:
		return bad("HandlerTimeout", "is negative")
	}
	if d := c.withDefaults(); d.ExtendInterval > 0 && d.ExtendInterval >= d.VisibilityTimeout {
		return bad("ExtendInterval", fmt.Sprintf("%v is not below VisibilityTimeout (%v): the message would become visible before it is extended", d.ExtendInterval, d.VisibilityTimeout))
	}
	return nil
}

// Format prints c as %v does, under every verb, as Config.Format does and for its reasons.
func (c ConsumerConfig) Format(f fmt.State, verb rune) {
	type plain ConsumerConfig // the fields, without this method
	type ConsumerConfig plain // under its own name, for %#v
	fmt.Fprintf(f, fmt.FormatString(f, 'v'), ConsumerConfig(c.shown()))
}

// MarshalJSON encodes the config as json.Marshal would, with what Format hides hidden: the
// secrets, the queue URL's and endpoint's user information and query values.
func (c ConsumerConfig) MarshalJSON() ([]byte, error) {
	type plain ConsumerConfig // the fields, without this method
	return json.Marshal(plain(c.shown()))
}

// shown is c with the queue URL and endpoint as redactURL shows them.
func (c ConsumerConfig) shown() ConsumerConfig {
	c.QueueURL, c.Endpoint = redactURL(c.QueueURL), redactURL(c.Endpoint)
	return c
}
