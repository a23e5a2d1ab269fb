package nats

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
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

// ConsumerConfig configures a Consumer of a durable pull consumer. The connection fields work
// as in Config; the zero value of every other field means its documented default.
//
// The durable consumer is the deployment's, like the stream: it must exist before Start, be a
// pull consumer (no DeliverSubject) and acknowledge explicitly (AckExplicit). Its AckWait,
// MaxDeliver and BackOff are the redelivery policy the Consumer follows; it has none of its
// own.
type ConsumerConfig struct {
	// Stream is the stream the durable consumer reads. Required.
	Stream string
	// Durable is the name of the durable pull consumer on Stream. Required.
	Durable string
	// Handler is called for each message; nil acks it, an error naks it for redelivery.
	// Required.
	Handler consume.Handler

	// URL, User, Password, Token, NKeySeed, CredsFile, Credentials, TLS, CAFile, CertFile,
	// KeyFile, ConnectTimeout, ReconnectWait and Conn are as in Config. Start connects unless
	// Conn is given; Stop closes only the connection Start made.
	URL            string
	User           string
	Password       string
	Token          string
	NKeySeed       string
	CredsFile      string
	Credentials    string
	TLS            *tls.Config
	CAFile         string
	CertFile       string
	KeyFile        string
	ConnectTimeout time.Duration
	ReconnectWait  time.Duration
	Conn           *natsgo.Conn
	// Name is the connection name shown by the server. Default "outbox-consumer"
	// (DefaultConsumerName).
	Name string

	// RawPayload reads bodies as the bare payload, with the ID and Type in the outbox.id and
	// outbox.type headers, as a Transport with RawPayload sends them. Default false: bodies are
	// envelopes, decoded with backend.DecodeEnvelope.
	RawPayload bool
	// Concurrency is how many handlers run at once. A pull request asks for as many messages
	// as there are free handlers (at most 256), so no message waits unmarked in a buffer.
	// Default 8 (DefaultConsumerConcurrency); at most 10000.
	Concurrency int
	// KeepKeyOrder handles the messages of one Key in stream order, each after the one before
	// it was settled, and lets nothing of a Key overtake a message whose handler failed. It
	// needs the durable consumer's MaxAckPending to be 1 (Start checks it): JetStream then
	// holds the stream's next messages until the failed one is redelivered and acked, so the
	// stream is consumed one message at a time, and Concurrency is not used. Default false: messages run Concurrency at a
	// time, in any order.
	KeepKeyOrder bool
	// FetchWait is how long each pull request waits on the server for messages. Stop cancels a
	// waiting request at once. Default 5s (DefaultFetchWait); at least 100ms.
	FetchWait time.Duration
	// ExtendInterval is how often a message whose handler still runs is marked in progress
	// (InProgress, which restarts its AckWait), so a slow handler is not raced by a
	// redelivery. Default half the durable consumer's AckWait; negative: never (a handler
	// slower than AckWait then sees its message delivered again, which the inbox absorbs).
	ExtendInterval time.Duration
	// Backoff, when set, naks a failed message with NakWithDelay of the backoff's delay for its
	// delivery count (NumDelivered). Default zero: NakDelay says what a failure does.
	Backoff outbox.Backoff
	// NakDelay is what a failed handler does with its message when Backoff is not set. Zero
	// (the default): Nak, so the
	// server redelivers it at once, or after the durable consumer's BackOff step where the
	// server applies BackOff to naks. Positive: NakWithDelay(NakDelay). Negative: no answer at
	// all, so the message is redelivered when its AckWait ends, after the BackOff steps when
	// the durable consumer has them.
	NakDelay time.Duration
	// HandlerTimeout bounds each handler call; its context is cancelled after it. Default none.
	HandlerTimeout time.Duration
	// AckTimeout bounds the wait for the server to confirm an Ack (acks are confirmed, so a
	// lost one is counted and logged rather than assumed), and each Nak, Term and InProgress.
	// Default 5s
	// (DefaultConsumerAckTimeout).
	AckTimeout time.Duration
	// Logger receives the consumer's logs. Default zap.NewNop().
	Logger *zap.Logger
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Name == "" && c.Conn == nil {
		c.Name = DefaultConsumerName
	}
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

// transportConfig is the part of c a Transport's Config shares: the connection.
func (c ConsumerConfig) transportConfig() Config {
	return Config{
		URL: c.URL, User: c.User, Password: c.Password, Token: c.Token, NKeySeed: c.NKeySeed,
		CredsFile: c.CredsFile, Credentials: c.Credentials, TLS: c.TLS, CAFile: c.CAFile,
		CertFile: c.CertFile, KeyFile: c.KeyFile, Name: c.Name, ConnectTimeout: c.ConnectTimeout,
		ReconnectWait: c.ReconnectWait, Conn: c.Conn, Logger: c.Logger,
	}
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
	if err := c.transportConfig().Validate(); err != nil {
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

// String describes the config without its secrets, so it can be logged.
func (c ConsumerConfig) String() string {
	conn := strings.TrimPrefix(c.transportConfig().String(), "nats.Config{")
	if i := strings.Index(conn, " Subject:"); i >= 0 {
		conn = conn[:i] // the transport's own tuning, not the consumer's
	}
	return fmt.Sprintf("nats.ConsumerConfig{Stream:%q Durable:%q %s RawPayload:%t Concurrency:%d KeepKeyOrder:%t FetchWait:%v ExtendInterval:%v NakDelay:%v HandlerTimeout:%v AckTimeout:%v}",
		c.Stream, c.Durable, conn, c.RawPayload, c.Concurrency, c.KeepKeyOrder, c.FetchWait, c.ExtendInterval, c.NakDelay, c.HandlerTimeout, c.AckTimeout)
}

// GoString keeps %#v from printing the secrets too.
func (c ConsumerConfig) GoString() string { return c.String() }

// MarshalJSON keeps json.Marshal from printing the secrets: it writes what String shows.
func (c ConsumerConfig) MarshalJSON() ([]byte, error) {
	tc := c.transportConfig()
	return json.Marshal(struct {
		Stream         string `json:"stream"`
		Durable        string `json:"durable"`
		URL            string `json:"url,omitempty"`
		Conn           bool   `json:"own_conn,omitempty"`
		Auth           string `json:"auth"`
		TLS            bool   `json:"tls,omitempty"`
		CAFile         string `json:"ca_file,omitempty"`
		CertFile       string `json:"cert_file,omitempty"`
		KeyFile        string `json:"key_file,omitempty"`
		Name           string `json:"name,omitempty"`
		RawPayload     bool   `json:"raw_payload"`
		Concurrency    int    `json:"concurrency,omitempty"`
		KeepKeyOrder   bool   `json:"keep_key_order,omitempty"`
		FetchWait      string `json:"fetch_wait"`
		ExtendInterval string `json:"extend_interval"`
		NakDelay       string `json:"nak_delay"`
		HandlerTimeout string `json:"handler_timeout"`
		AckTimeout     string `json:"ack_timeout"`
	}{
		Stream: c.Stream, Durable: c.Durable, URL: redactURLs(c.URL), Conn: c.Conn != nil, Auth: tc.auth(),
		TLS: c.TLS != nil, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile, Name: c.Name,
		RawPayload: c.RawPayload, Concurrency: c.Concurrency, KeepKeyOrder: c.KeepKeyOrder, FetchWait: c.FetchWait.String(),
		ExtendInterval: c.ExtendInterval.String(), NakDelay: c.NakDelay.String(),
		HandlerTimeout: c.HandlerTimeout.String(), AckTimeout: c.AckTimeout.String(),
	})
}
