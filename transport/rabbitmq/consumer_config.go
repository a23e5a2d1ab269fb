package rabbitmq

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
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

// ConsumerConfig configures a Consumer. The connection fields (URL, TLS and its files,
// DialTimeout, Heartbeat, ReconnectMin, ReconnectMax) mean what they mean in Config. The zero
// value of every field but URL and Queue means its documented default.
type ConsumerConfig struct {
	// URL is the broker, as in Config. Required. Its password never appears in String, errors
	// or logs.
	URL string
	// Queue is the queue to consume. Required. It must exist: the consumer never declares it
	// (its arguments, such as x-queue-type, x-delivery-limit and x-dead-letter-exchange, are the
	// service's decision).
	Queue string
	// Handler is called for each message; nil acknowledges it, an error requeues it. Required.
	Handler consume.Handler

	// TLS, CAFile, CertFile, KeyFile and KeyPassword are as in Config. Default: the system roots.
	TLS         *tls.Config
	CAFile      string
	CertFile    string
	KeyFile     string
	KeyPassword string
	// DialTimeout and Heartbeat are as in Config. Default 10s each.
	DialTimeout time.Duration
	Heartbeat   time.Duration
	// ReconnectMin and ReconnectMax bound the wait before dialing again after the connection
	// dropped or a dial failed: it starts at the minimum and doubles up to the maximum.
	// Default 100ms and 500ms (DefaultReconnectMin, DefaultReconnectMax).
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// ConnectionName is shown in the broker's management UI. Default "outbox consumer"
	// (DefaultConsumerConnectionName).
	ConnectionName string

	// RawPayload reads bodies as the bare payload, with the ID in the message-id property and
	// the Type in the type property, as a Transport with RawPayload sends them. Default false:
	// bodies are envelopes, decoded with backend.DecodeEnvelope.
	RawPayload bool
	// Concurrency is how many handlers run at once; it is also the prefetch count (basic.qos),
	// so the broker never hands the consumer a message it has no handler for. Default 8
	// (DefaultConsumerConcurrency); at most 65535.
	Concurrency int
	// HandlerTimeout bounds each handler call; its context is cancelled after it. Default none.
	HandlerTimeout time.Duration
	// Logger receives the consumer's logs. Default zap.NewNop().
	Logger *zap.Logger
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConsumerConcurrency
	}
	if c.ConnectionName == "" {
		c.ConnectionName = DefaultConsumerConnectionName
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// transportConfig is the part of c a Transport's Config shares: the connection.
func (c ConsumerConfig) transportConfig() Config {
	return Config{
		URL: c.URL, TLS: c.TLS, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile, KeyPassword: c.KeyPassword,
		DialTimeout: c.DialTimeout, Heartbeat: c.Heartbeat, ReconnectMin: c.ReconnectMin, ReconnectMax: c.ReconnectMax,
		ConnectionName: c.ConnectionName,
	}
}

// Validate names the first missing or wrong field. It never repeats a secret.
func (c ConsumerConfig) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "rabbitmq consumer", Field: field, Problem: problem}
	}
	if err := c.transportConfig().Validate(); err != nil {
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

// String describes the config without its secrets, so it can be logged.
func (c ConsumerConfig) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rabbitmq.ConsumerConfig{URL:%q Queue:%q", RedactURL(c.URL), c.Queue)
	if c.TLS != nil {
		b.WriteString(" TLS:own")
	}
	if c.CAFile != "" {
		fmt.Fprintf(&b, " CAFile:%q", c.CAFile)
	}
	if c.CertFile != "" {
		fmt.Fprintf(&b, " CertFile:%q KeyFile:%q", c.CertFile, c.KeyFile)
	}
	if c.KeyPassword != "" {
		b.WriteString(" KeyPassword:" + backend.Redacted)
	}
	fmt.Fprintf(&b, " DialTimeout:%s Heartbeat:%s ReconnectMin:%s ReconnectMax:%s ConnectionName:%q RawPayload:%t Concurrency:%d HandlerTimeout:%s}",
		c.DialTimeout, c.Heartbeat, c.ReconnectMin, c.ReconnectMax, c.ConnectionName, c.RawPayload, c.Concurrency, c.HandlerTimeout)
	return b.String()
}

// GoString keeps %#v from printing the secrets too.
func (c ConsumerConfig) GoString() string { return c.String() }

// MarshalJSON writes the config without its secrets (the URL's password, KeyPassword) and
// without the fields JSON cannot carry (TLS, Logger).
func (c ConsumerConfig) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		URL            string `json:"url"`
		Queue          string `json:"queue"`
		TLS            bool   `json:"tls_config,omitempty"`
		CAFile         string `json:"ca_file,omitempty"`
		CertFile       string `json:"cert_file,omitempty"`
		KeyFile        string `json:"key_file,omitempty"`
		KeyPassword    string `json:"key_password,omitempty"`
		DialTimeout    string `json:"dial_timeout,omitempty"`
		Heartbeat      string `json:"heartbeat,omitempty"`
		ReconnectMin   string `json:"reconnect_min,omitempty"`
		ReconnectMax   string `json:"reconnect_max,omitempty"`
		ConnectionName string `json:"connection_name,omitempty"`
		RawPayload     bool   `json:"raw_payload,omitempty"`
		Concurrency    int    `json:"concurrency,omitempty"`
		HandlerTimeout string `json:"handler_timeout,omitempty"`
	}{
		URL: RedactURL(c.URL), Queue: c.Queue, TLS: c.TLS != nil, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		KeyPassword: redacted(c.KeyPassword), DialTimeout: duration(c.DialTimeout), Heartbeat: duration(c.Heartbeat),
		ReconnectMin: duration(c.ReconnectMin), ReconnectMax: duration(c.ReconnectMax), ConnectionName: c.ConnectionName,
		RawPayload: c.RawPayload, Concurrency: c.Concurrency, HandlerTimeout: duration(c.HandlerTimeout),
	})
}
