package rabbitmq

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
)

// Connection is how a client reaches the broker: the settings a Transport (Config) and a
// Consumer (ConsumerConfig) share, embedded in both. Its secrets (the URL's password,
// KeyPassword) never print or marshal, whatever the verb: URL is a URL and KeyPassword an
// outbox.Secret.
//
// Give URL, and the transport dials, and dials again after a loss; or give Conn, a connection
// the service already has, and the transport uses it instead.
type Connection struct {
	// URL is the broker, amqp://user:password@host:5672/vhost or amqps://… for TLS (percent-encode
	// reserved characters of the user and password). Required unless Conn is set. Its password
	// never appears in a description, JSON, errors or logs.
	URL URL `json:"url,omitempty"`
	// Conn is a connection the service already has, used instead of dialing URL: the transport
	// opens its channels on it and never closes it (closing it stays the service's job, after the
	// Transport's or Consumer's Close). Not allowed with URL or the TLS settings; DialTimeout,
	// Heartbeat, WriteTimeout and ConnectionName, which are the dial's, do not apply to it.
	//
	// Reconnecting then means opening a channel again on Conn: a channel the broker closed is
	// opened again (a Transport on its next Publish, a Consumer after ReconnectMin), but a Conn
	// that closed is never dialed again: a Transport's Publish fails, as an outage wrapping
	// ErrConnectionLost, and a Consumer keeps waiting, until the service closes them and gives
	// new ones a new connection (amqp091-go does not reconnect a connection by itself).
	Conn *amqp.Connection `json:"-"`

	// TLS is the client TLS configuration for amqps URLs. Default: the system roots, or the
	// files below. Not allowed with CAFile, CertFile or KeyFile. It may hold private keys, so it
	// is never marshalled (and prints as a pointer).
	TLS *tls.Config `json:"-"`
	// CAFile is a PEM file of the CA certificates that verify the broker. Default: the system roots.
	CAFile string `json:"ca_file,omitempty"`
	// CertFile and KeyFile are the client certificate and its key (PEM), given both or neither.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// KeyPassword decrypts an encrypted PEM KeyFile ("Proc-Type: 4,ENCRYPTED"). Default none.
	KeyPassword outbox.Secret `json:"key_password,omitempty"`

	// DialTimeout bounds connecting, TLS and the AMQP handshake. Default 10s (DefaultDialTimeout).
	DialTimeout time.Duration `json:"dial_timeout,omitempty"`
	// Heartbeat is the AMQP heartbeat interval. Default 10s (DefaultHeartbeat).
	Heartbeat time.Duration `json:"heartbeat,omitempty"`
	// WriteTimeout bounds one write to the broker's socket. A broker that stops reading for
	// longer has the connection closed: what waits for its confirm fails, as an outage, and the
	// next Publish dials again. Default 10s (DefaultWriteTimeout).
	WriteTimeout time.Duration `json:"write_timeout,omitempty"`
	// ReconnectMin and ReconnectMax bound the wait after a failed connection attempt (a
	// Transport: before the next Publish tries again, a Publish inside the wait failing at once,
	// as an outage; a Consumer: before it dials again, after a loss too). The wait starts at
	// the minimum and doubles up to the maximum. It keeps a caller that publishes in a loop from
	// dialing in a loop. A ReconnectMax above a second delays the relay's return after an outage
	// by up to that much: a paused relay probes at most a second apart, and a probe inside the
	// wait does not dial. Default 100ms and 500ms (DefaultReconnectMin, DefaultReconnectMax).
	ReconnectMin time.Duration `json:"reconnect_min,omitempty"`
	ReconnectMax time.Duration `json:"reconnect_max,omitempty"`
	// ConnectionName is shown in the broker's management UI. Default "outbox" for a Transport
	// (DefaultConnectionName), "outbox consumer" for a Consumer (DefaultConsumerConnectionName).
	ConnectionName string `json:"connection_name,omitempty"`
}

// withDefaults fills the zero fields, naming the connection name when it has none.
func (c Connection) withDefaults(name string) Connection {
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
		c.ConnectionName = name
	}
	return c
}

// validate names the first missing or wrong field. It never repeats a secret.
func (c Connection) validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "rabbitmq", Field: field, Problem: problem}
	}
	if c.Conn != nil {
		switch {
		case c.URL != "":
			return bad("URL", "is set together with Conn (give one)")
		case c.TLS != nil || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.KeyPassword != "":
			return bad("TLS", "settings are given together with Conn, which is already connected")
		}
		return c.validateTimes(bad)
	}
	if c.URL == "" {
		return bad("URL", "is empty (want amqp://user:password@host:5672/vhost, or set Conn)")
	}
	raw := string(c.URL)
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return bad("URL", urlProblem(err).Error())
	case u.Scheme != "amqp" && u.Scheme != "amqps":
		return bad("URL", fmt.Sprintf("scheme %q is not amqp or amqps", u.Scheme))
	case u.Hostname() == "":
		return bad("URL", "has no host")
	case strings.ContainsAny(raw, " \t\r\n"):
		return bad("URL", "contains whitespace")
	}
	if p := u.Port(); p != "" {
		if _, err := parsePort(p); err != nil {
			return bad("URL", err.Error())
		}
	}
	switch {
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
	}
	return c.validateTimes(bad)
}

func (c Connection) validateTimes(bad func(field, problem string) error) error {
	switch {
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

// addr is the broker's host:port, for errors and logs (never the URL, which holds the
// password). c is valid.
func (c Connection) addr() string {
	if c.Conn != nil {
		if a := c.Conn.RemoteAddr(); a != nil {
			return a.String()
		}
		return "the given connection"
	}
	u, _ := url.Parse(string(c.URL)) // validate parsed it
	port := u.Port()
	if port == "" {
		port = "5672"
		if u.Scheme == "amqps" {
			port = "5671"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// errConnClosed is the failure of a channel asked of a Conn the service gave that has closed:
// the transport never dials it again.
var errConnClosed = fmt.Errorf("%w: Connection.Conn is closed, and the transport does not dial it again (give a new Transport or Consumer a new connection)", ErrConnectionLost)

// open returns the connection to use: Conn when given (owned false), else a new one dialed with
// tc, bounded by DialTimeout and ctx, its writes by WriteTimeout. Its errors are neither
// classified nor scrubbed.
func (c Connection) open(ctx context.Context, tc *tls.Config) (conn *amqp.Connection, owned bool, err error) {
	if c.Conn != nil {
		if c.Conn.IsClosed() {
			return nil, false, errConnClosed
		}
		return c.Conn, false, nil
	}
	timeout := c.DialTimeout
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(c.ConnectionName)
	conn, err = amqp.DialConfig(string(c.URL), amqp.Config{
		Heartbeat:       c.Heartbeat,
		TLSClientConfig: tc.Clone(),
		Properties:      props,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			nc, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds TLS and the AMQP handshake; the library clears it once connected.
			deadline := time.Now().Add(timeout)
			if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
				deadline = dl
			}
			if err := nc.SetDeadline(deadline); err != nil {
				_ = nc.Close()
				return nil, err
			}
			return &boundedConn{Conn: nc, timeout: c.WriteTimeout}, nil
		},
	})
	return conn, true, err
}

// closeChannel closes ch, waiting at most closeTimeout for a broker that stopped answering
// (amqp091-go's Close waits for close-ok without a deadline; it returns once the connection
// closes, so the goroutine ends with it at the latest).
func closeChannel(ch *amqp.Channel) {
	done := make(chan struct{})
	go func() {
		_ = ch.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeTimeout):
	}
}

// URL is an AMQP URL that never shows its secrets: under every fmt verb, in JSON and as text it
// prints as RedactURL does (the password and query values not known to be harmless masked), so
// a config holding one needs no printer of its own. Reveal returns the URL itself, for the
// client library.
type URL string

// Reveal returns the URL. Call it only to hand it to the client library.
func (u URL) Reveal() string { return string(u) }

// String returns the URL redacted, or "" for an empty URL.
func (u URL) String() string { return RedactURL(string(u)) }

// GoString is String quoted, for %#v.
func (u URL) GoString() string { return strconv.Quote(u.String()) }

// Format prints String under every verb, so %x or %q cannot bypass it.
func (u URL) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'q', verb == 'v' && f.Flag('#'):
		fmt.Fprint(f, u.GoString())
	default:
		fmt.Fprint(f, u.String())
	}
}

// MarshalJSON encodes String.
func (u URL) MarshalJSON() ([]byte, error) { return json.Marshal(u.String()) }

// MarshalText encodes String, for encoders that use encoding.TextMarshaler.
func (u URL) MarshalText() ([]byte, error) { return []byte(u.String()), nil }
