package nats

import (
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
	// DefaultConsumerName is the connection name a Consumer's own connection shows the server.
	DefaultConsumerName = "outbox-consumer"
	// DefaultFetchWait is how long one pull request waits on the server for messages before it
	// expires and the next is sent.
	DefaultFetchWait = 5 * time.Second
	// DefaultConsumerAckTimeout bounds the wait for the server's confirmation of one Ack.
	DefaultConsumerAckTimeout = 5 * time.Second
	// DefaultStopTimeout bounds Run's graceful stop once its context ends.
	DefaultStopTimeout = 30 * time.Second
	// MaxConsumerConcurrency is the largest Concurrency accepted.
	MaxConsumerConcurrency = 10000
	// MinFetchWait is the shortest FetchWait accepted: a pull request expiring sooner mostly
	// measures the round trip.
	MinFetchWait = 100 * time.Millisecond
)

// ConsumerConfig configures a Consumer of a durable pull consumer. The zero value of every field
// but Stream, Durable and Handler means its documented default.
//
// The durable consumer is the deployment's, like the stream: it must exist before Start, be a
// pull consumer (no DeliverSubject) and acknowledge explicitly (AckExplicit). Its AckWait,
// MaxDeliver and BackOff are the redelivery policy the Consumer follows; it has none of its
// own.
type ConsumerConfig struct {
	// Stream is the stream the durable consumer reads. Required.
	Stream string `json:"stream"`
	// Durable is the name of the durable pull consumer on Stream. Required.
	Durable string `json:"durable"`
	// Handler is called for each message; nil acks it, an error naks it for redelivery.
	// Required.
	Handler consume.Handler `json:"-"`

	// Connection says how to reach the servers, as a Transport's Config does: URL or Conn,
	// the credentials, TLS and its files, ConnectTimeout, ReconnectWait, and Name (default
	// "outbox-consumer", DefaultConsumerName). Start connects unless Conn is given; Stop closes
	// only the connection Start made.
	Connection

	// RawPayload reads bodies as the bare payload, with the ID and Type in the outbox.id and
	// outbox.type headers, as a Transport with RawPayload sends them. Default false: bodies are
	// envelopes, decoded with backend.DecodeEnvelope.
	RawPayload bool `json:"raw_payload"`
	// Concurrency is how many handlers run at once. A pull request asks for as many messages
	// as there are free handlers (at most 256), so no message waits unmarked in a buffer.
	// Default 8 (DefaultConsumerConcurrency); at most 10000.
	Concurrency int `json:"concurrency,omitempty"`
	// KeepKeyOrder handles the messages of one Key in stream order, each after the one before
	// it was settled, and lets nothing of a Key overtake a message whose handler failed. It
	// needs the durable consumer's MaxAckPending to be 1 (Start checks it): JetStream then
	// holds the stream's next messages until the failed one is redelivered and acked, so the
	// stream is consumed one message at a time, and Concurrency is not used. Default false: messages run Concurrency at a
	// time, in any order.
	KeepKeyOrder bool `json:"keep_key_order,omitempty"`
	// FetchWait is how long each pull request waits on the server for messages. Stop cancels a
	// waiting request at once. Default 5s (DefaultFetchWait); at least 100ms.
	FetchWait time.Duration `json:"fetch_wait,omitempty"`
	// ExtendInterval is how often a message whose handler still runs is marked in progress
	// (InProgress, which restarts its AckWait), so a slow handler is not raced by a
	// redelivery. Default half the durable consumer's AckWait; negative: never (a handler
	// slower than AckWait then sees its message delivered again, which the inbox absorbs).
	ExtendInterval time.Duration `json:"extend_interval,omitempty"`
	// Backoff, when set, naks a failed message with NakWithDelay of the backoff's delay for its
	// delivery count (NumDelivered). Default zero: NakDelay says what a failure does.
	Backoff outbox.Backoff `json:"backoff"`
	// NakDelay is what a failed handler does with its message when Backoff is not set. Zero
	// (the default): Nak, so the
	// server redelivers it at once, or after the durable consumer's BackOff step where the
	// server applies BackOff to naks. Positive: NakWithDelay(NakDelay). Negative: no answer at
	// all, so the message is redelivered when its AckWait ends, after the BackOff steps when
	// the durable consumer has them.
	NakDelay time.Duration `json:"nak_delay,omitempty"`
	// HandlerTimeout bounds each handler call; its context is cancelled after it. Default none.
	HandlerTimeout time.Duration `json:"handler_timeout,omitempty"`
	// AckTimeout bounds the wait for the server to confirm an Ack (acks are confirmed, so a
	// lost one is counted and logged rather than assumed), and each Nak, Term and InProgress.
	// Default 5s
	// (DefaultConsumerAckTimeout).
	AckTimeout time.Duration `json:"ack_timeout,omitempty"`
	// Logger receives the consumer's logs. Default zap.NewNop().
	Logger *zap.Logger `json:"-"`
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	c.Connection = c.Connection.withDefaults(DefaultConsumerName)
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConsumerConcurrency
	}
	if c.FetchWait == 0 {
		c.FetchWait = DefaultFetchWait
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultConsumerAckTimeout
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Validate names the first missing or wrong field. It never repeats a secret.
func (c ConsumerConfig) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "nats consumer", Field: field, Problem: problem}
	}
	switch {
	case c.Stream == "":
		return bad("Stream", "is empty")
	case !validStreamName(c.Stream):
		return bad("Stream", fmt.Sprintf("%q is not a stream name (no spaces, dots, *, >, / or \\)", c.Stream))
	case c.Durable == "":
		return bad("Durable", "is empty")
	case !validStreamName(c.Durable):
		return bad("Durable", fmt.Sprintf("%q is not a consumer name (no spaces, dots, *, >, / or \\)", c.Durable))
	case c.Handler == nil:
		return bad("Handler", "is nil")
	case c.Backoff != (outbox.Backoff{}) && c.NakDelay != 0:
		return bad("NakDelay", "is set with Backoff; set one")
	}
	if err := c.Backoff.Validate("nats consumer", "Backoff"); err != nil {
		return err
	}
	if err := c.validate(); err != nil { // the Connection's
		return err
	}
	switch {
	case c.Concurrency < 0:
		return bad("Concurrency", "is negative")
	case c.Concurrency > MaxConsumerConcurrency:
		return bad("Concurrency", fmt.Sprintf("%d is above %d", c.Concurrency, MaxConsumerConcurrency))
	case c.FetchWait != 0 && c.FetchWait < MinFetchWait:
		return bad("FetchWait", fmt.Sprintf("%v is below %v", c.FetchWait, MinFetchWait))
	case c.HandlerTimeout < 0:
		return bad("HandlerTimeout", "is negative")
	case c.AckTimeout < 0:
		return bad("AckTimeout", "is negative")
	}
	return nil
}

// Format prints c as %v does, under every verb, as Config.Format does and for its reason.
func (c ConsumerConfig) Format(f fmt.State, verb rune) {
	type plain ConsumerConfig // the fields, without this method
	type ConsumerConfig plain // under its own name, for %#v
	fmt.Fprintf(f, fmt.FormatString(f, 'v'), ConsumerConfig(c))
}
