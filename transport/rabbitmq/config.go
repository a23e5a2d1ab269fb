package rabbitmq

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
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

// Config configures a Transport. The zero value of every field but URL means its documented
// default.
type Config struct {
	// URL is the broker, amqp://user:password@host:5672/vhost or amqps://… for TLS (percent-encode
	// reserved characters of the user and password). Required. The password never appears in
	// String, errors or logs.
	URL string

	// Exchange is the exchange messages are published to. Default "" (the default exchange,
	// which delivers to the queue named by the routing key). It must exist: the transport checks
	// it once per connection, and never declares it.
	Exchange string
	// RoutingKey is a template for each message's routing key: {type} is replaced by the
	// message Type and {key} by its Key, e.g. "orders.{type}" or "{key}". Default "{type}"
	// (DefaultRoutingKey).
	RoutingKey string
	// Route picks the exchange and routing key of a message itself, instead of Exchange and
	// RoutingKey. It must be fast, safe for concurrent use, and must not keep m. Default none.
	Route func(m *outbox.Message) (exchange, routingKey string)

	// RawPayload sends the message Payload alone as the body, instead of the envelope
	// {"id","eventType","payload","result","timestamp"}. The ID and Type still travel as the
	// message-id and type properties and the outbox.type header. Default false.
	RawPayload bool
	// MaxMessageBytes bounds a message body; a larger message fails permanently without being
	// sent. Set it to the broker's max_message_size. Default 16 MiB (DefaultMaxMessageBytes); at
	// most 512 MiB. A broker with a lower limit than this closes the channel on a larger message:
	// the transport then fails that message permanently and lowers its own bound to the one the
	// broker reported.
	MaxMessageBytes int
	// KeepKeyOrder makes one Publish keep the order of each Key and stop a Key at its first failure
	// (outbox.KeyOrderer): a Key's second message is sent only once the broker confirmed its first,
	// so a batch with n messages of one Key takes n round trips. Turn it on with the relay's
	// Ordered mode, which then sends a Key's consecutive messages in one batch. Default false:
	// every message of a batch is sent at once and confirmed as a whole.
	KeepKeyOrder bool

	// TLS is the client TLS configuration for amqps URLs. Default: the system roots, or the
	// files below. Not allowed with CAFile, CertFile or KeyFile.
	TLS *tls.Config
	// CAFile is a PEM file of the CA certificates that verify the broker. Default: the system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and its key (PEM), given both or neither.
	CertFile string
	KeyFile  string
	// KeyPassword decrypts an encrypted PEM KeyFile ("Proc-Type: 4,ENCRYPTED"). Default none.
	KeyPassword string

	// DialTimeout bounds connecting, TLS and the AMQP handshake. Default 10s (DefaultDialTimeout).
	DialTimeout time.Duration
	// Heartbeat is the AMQP heartbeat interval. Default 10s (DefaultHeartbeat).
	Heartbeat time.Duration
	// WriteTimeout bounds one write to the broker's socket. A broker that stops reading for
	// longer has the connection closed: what waits for its confirm fails, as an outage, and the
	// next Publish dials again. Default 10s (DefaultWriteTimeout).
	WriteTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the wait after a failed connection attempt before
	// the next Publish tries again; a Publish inside the wait fails at once, as an outage.
	// The wait keeps a caller that publishes in a loop from dialing in a loop. A ReconnectMax
	// above a second delays the relay's return after an outage by up to that much: a paused
	// relay probes at most a second apart, and a probe inside the wait does not dial.
	// Default 100ms and 500ms (DefaultReconnectMin, DefaultReconnectMax).
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// ConnectionName is shown in the broker's management UI. Default "outbox"
	// (DefaultConnectionName).
	ConnectionName string
}

func (c Config) withDefaults() Config {
	if c.RoutingKey == "" {
		c.RoutingKey = DefaultRoutingKey
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = max(DefaultReconnectMax, c.ReconnectMin)
	}
	if c.ConnectionName == "" {
		c.ConnectionName = DefaultConnectionName
	}
	return c
}

// Validate names the first missing or wrong field. Zero values are valid where they have a
// default. It never repeats a secret.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "rabbitmq", Field: field, Problem: problem}
	}
	if c.URL == "" {
		return bad("URL", "is empty (want amqp://user:password@host:5672/vhost)")
	}
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		return bad("URL", urlProblem(err).Error())
	case u.Scheme != "amqp" && u.Scheme != "amqps":
		return bad("URL", fmt.Sprintf("scheme %q is not amqp or amqps", u.Scheme))
	case u.Hostname() == "":
		return bad("URL", "has no host")
	case strings.ContainsAny(c.URL, " \t\r\n"):
		return bad("URL", "contains whitespace")
	}
	if p := u.Port(); p != "" {
		if _, err := parsePort(p); err != nil {
			return bad("URL", err.Error())
		}
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
	case c.TLS != nil && (c.CAFile != "" || c.CertFile != "" || c.KeyFile != ""):
		return bad("TLS", "is set together with CAFile, CertFile or KeyFile (give one)")
	case c.CertFile != "" && c.KeyFile == "":
		return bad("KeyFile", "is empty while CertFile is set")
	case c.CertFile == "" && c.KeyFile != "":
		return bad("CertFile", "is empty while KeyFile is set")
	case c.KeyPassword != "" && c.KeyFile == "":
		return bad("KeyPassword", "is set without KeyFile")
	case (c.TLS != nil || c.CAFile != "" || c.CertFile != "") && u.Scheme != "amqps":
		return bad("URL", "uses amqp:// while TLS settings are given (use amqps://)")
	case c.DialTimeout < 0:
		return bad("DialTimeout", "is negative")
	case c.Heartbeat < 0:
		return bad("Heartbeat", "is negative")
	case c.Heartbeat > 0 && c.Heartbeat < time.Second:
		return bad("Heartbeat", "is below 1s, the AMQP resolution")
	case c.WriteTimeout < 0:
		return bad("WriteTimeout", "is negative")
	case c.ReconnectMin < 0:
		return bad("ReconnectMin", "is negative")
	case c.ReconnectMax < 0:
		return bad("ReconnectMax", "is negative")
	case c.ReconnectMax > 0 && c.ReconnectMax < c.ReconnectMin:
		return bad("ReconnectMax", "is below ReconnectMin")
	case len(c.ConnectionName) > maxShortString:
		return bad("ConnectionName", fmt.Sprintf("is above %d bytes", maxShortString))
	}
	return nil
}

// String describes the config without its secrets, so it can be logged.
func (c Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rabbitmq.Config{URL:%q Exchange:%q RoutingKey:%q", RedactURL(c.URL), c.Exchange, c.RoutingKey)
	if c.Route != nil {
		b.WriteString(" Route:func")
	}
	fmt.Fprintf(&b, " RawPayload:%t MaxMessageBytes:%d KeepKeyOrder:%t", c.RawPayload, c.MaxMessageBytes, c.KeepKeyOrder)
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
	fmt.Fprintf(&b, " DialTimeout:%s Heartbeat:%s WriteTimeout:%s ReconnectMin:%s ReconnectMax:%s}",
		c.DialTimeout, c.Heartbeat, c.WriteTimeout, c.ReconnectMin, c.ReconnectMax)
	return b.String()
}

// GoString keeps %#v from printing the secrets too.
func (c Config) GoString() string { return c.String() }

// MarshalJSON writes the config without its secrets (the URL's password, KeyPassword) and
// without the fields JSON cannot carry (Route, TLS).
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		URL             string `json:"url"`
		Exchange        string `json:"exchange,omitempty"`
		RoutingKey      string `json:"routing_key,omitempty"`
		Route           bool   `json:"route,omitempty"`
		RawPayload      bool   `json:"raw_payload,omitempty"`
		MaxMessageBytes int    `json:"max_message_bytes,omitempty"`
		KeepKeyOrder    bool   `json:"keep_key_order,omitempty"`
		TLS             bool   `json:"tls_config,omitempty"`
		CAFile          string `json:"ca_file,omitempty"`
		CertFile        string `json:"cert_file,omitempty"`
		KeyFile         string `json:"key_file,omitempty"`
		KeyPassword     string `json:"key_password,omitempty"`
		DialTimeout     string `json:"dial_timeout,omitempty"`
		Heartbeat       string `json:"heartbeat,omitempty"`
		WriteTimeout    string `json:"write_timeout,omitempty"`
		ReconnectMin    string `json:"reconnect_min,omitempty"`
		ReconnectMax    string `json:"reconnect_max,omitempty"`
		ConnectionName  string `json:"connection_name,omitempty"`
	}{
		URL: RedactURL(c.URL), Exchange: c.Exchange, RoutingKey: c.RoutingKey, Route: c.Route != nil,
		RawPayload: c.RawPayload, MaxMessageBytes: c.MaxMessageBytes, KeepKeyOrder: c.KeepKeyOrder, TLS: c.TLS != nil,
		CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile, KeyPassword: redacted(c.KeyPassword),
		DialTimeout: duration(c.DialTimeout), Heartbeat: duration(c.Heartbeat), WriteTimeout: duration(c.WriteTimeout),
		ReconnectMin: duration(c.ReconnectMin), ReconnectMax: duration(c.ReconnectMax), ConnectionName: c.ConnectionName,
	})
}

func duration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
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
