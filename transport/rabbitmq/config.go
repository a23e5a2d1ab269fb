package rabbitmq

import (
	"errors"
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
)

// Defaults and limits of Config.
const (
	// DefaultRoutingKey is the routing key template used when RoutingKey is empty: the message
	// Type, so a topic or direct exchange can route each type to its own queues.
	DefaultRoutingKey = "{type}"
	// DefaultMaxMessageBytes bounds a message body by default: 16 MiB, the max_message_size
	// RabbitMQ 4 ships with (3.8 to 3.13 default to 128 MiB), so a message that fits is accepted
	// by any current broker left at its default.
	DefaultMaxMessageBytes = 16 << 20
	// MaxMessageBytesLimit is the largest max_message_size RabbitMQ can be configured with (512 MiB).
	MaxMessageBytesLimit = 512 << 20
	// DefaultDialTimeout bounds connecting, TLS and the AMQP handshake.
	DefaultDialTimeout = 10 * time.Second
	// DefaultHeartbeat is the AMQP heartbeat interval asked of the broker; a dead peer is noticed
	// after about twice this.
	DefaultHeartbeat = 10 * time.Second
	// DefaultWriteTimeout bounds one write to the socket.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultReconnectMin and DefaultReconnectMax bound the wait between failed connection
	// attempts: it starts at the minimum and doubles up to the maximum. The maximum stays below
	// the second a paused relay waits at most between its probes, so that every probe dials and
	// the relay is back within about a second of the broker's return (a 5s cap held it back
	// 2.8-4.1s after an outage).
	DefaultReconnectMin = 100 * time.Millisecond
	DefaultReconnectMax = 500 * time.Millisecond
	// DefaultConnectionName names a Transport's connection in the broker's management UI.
	DefaultConnectionName = "outbox"
	// maxShortString is the AMQP limit on exchange names, routing keys and header names.
	maxShortString = 255
)

// Config configures a Transport. The zero value of every field but URL (or Conn) means its
// documented default.
type Config struct {
	// Connection says how to reach the broker: URL (required unless Conn is set) or Conn, TLS
	// and its files, KeyPassword, DialTimeout, Heartbeat, WriteTimeout, ReconnectMin,
	// ReconnectMax and ConnectionName (default "outbox", DefaultConnectionName).
	Connection

	// Exchange is the exchange messages are published to. Default "" (the default exchange,
	// which delivers to the queue named by the routing key). It must exist: the transport checks
	// it once per connection, and never declares it.
	Exchange string `json:"exchange,omitempty"`
	// RoutingKey is a template for each message's routing key: {type} is replaced by the
	// message Type and {key} by its Key, e.g. "orders.{type}" or "{key}". Default "{type}"
	// (DefaultRoutingKey).
	RoutingKey string `json:"routing_key,omitempty"`
	// Route picks the exchange and routing key of a message itself, instead of Exchange and
	// RoutingKey. It must be fast, safe for concurrent use, and must not keep m. Default none.
	Route func(m *outbox.Message) (exchange, routingKey string) `json:"-"`

	// RawPayload sends the message Payload alone as the body, instead of the envelope
	// {"id","eventType","payload","result","timestamp"}. The ID and Type still travel as the
	// message-id and type properties and the outbox.type header. Default false.
	RawPayload bool `json:"raw_payload,omitempty"`
	// MaxMessageBytes bounds a message body; a larger message fails permanently without being
	// sent. Set it to the broker's max_message_size. Default 16 MiB (DefaultMaxMessageBytes); at
	// most 512 MiB. A broker with a lower limit than this closes the channel on a larger message:
	// the transport then fails that message permanently and lowers its own bound to the one the
	// broker reported.
	MaxMessageBytes int `json:"max_message_bytes,omitempty"`
	// KeepKeyOrder makes one Publish keep the order of each Key and stop a Key at its first failure
	// (outbox.KeyOrderer): a Key's second message is sent only once the broker confirmed its first,
	// so a batch with n messages of one Key takes n round trips. Turn it on with the relay's
	// Ordered mode, which then sends a Key's consecutive messages in one batch. Default false:
	// every message of a batch is sent at once and confirmed as a whole.
	KeepKeyOrder bool `json:"keep_key_order,omitempty"`
}

func (c Config) withDefaults() Config {
	c.Connection = c.Connection.withDefaults(DefaultConnectionName)
	if c.RoutingKey == "" {
		c.RoutingKey = DefaultRoutingKey
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	return c
}

// Validate names the first missing or wrong field. Zero values are valid where they have a
// default. It never repeats a secret.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "rabbitmq", Field: field, Problem: problem}
	}
	if err := c.validate(); err != nil { // the Connection's
		return err
	}
	if len(c.Exchange) > maxShortString {
		return bad("Exchange", fmt.Sprintf("is %d bytes, above the AMQP limit of %d", len(c.Exchange), maxShortString))
	}
	if c.RoutingKey != "" {
		if err := checkTemplate(c.RoutingKey); err != nil {
			return bad("RoutingKey", err.Error())
		}
	}
	switch {
	case c.MaxMessageBytes < 0:
		return bad("MaxMessageBytes", "is negative")
	case c.MaxMessageBytes > MaxMessageBytesLimit:
		return bad("MaxMessageBytes", fmt.Sprintf("%d is above the RabbitMQ limit of %d", c.MaxMessageBytes, MaxMessageBytesLimit))
	}
	return nil
}

// Format prints c as %v does (with %+v and %#v's flags), under every verb. Its secrets are a URL
// and an outbox.Secret and print redacted; this is only for the other verbs: under %s, fmt
// prints a pointer field that has no methods, such as TLS, as what it points to, and a
// *tls.Config can hold private keys.
func (c Config) Format(f fmt.State, verb rune) {
	type plain Config // the fields, without this method
	type Config plain // under its own name, for %#v
	fmt.Fprintf(f, fmt.FormatString(f, 'v'), Config(c))
}

// urlProblem reports that a URL did not parse without a word of the parser's message, which
// quotes parts of the URL and so, when the password holds a reserved character, the password.
func urlProblem(error) error {
	return errors.New("does not parse as a URL (percent-encode reserved characters such as # ? / @ : in the user and password)")
}

func parsePort(p string) (int, error) {
	n := 0
	for _, r := range p {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("port %q is not a number", p)
		}
		n = n*10 + int(r-'0')
		if n > 65535 {
			return 0, fmt.Errorf("port %q is above 65535", p)
		}
	}
	return n, nil
}
