package nats

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
)

// Documented defaults, exported so that docs, the CLI and other wiring cannot drift from them.
const (
	// DefaultURL is the server the transport connects to when URL is empty.
	DefaultURL = natsgo.DefaultURL
	// DefaultSubject is the subject template of messages no route claims: a stream with the
	// subject "outbox.>" captures them all.
	DefaultSubject = "outbox.{type}"
	// DefaultName is the connection name the server shows in its monitoring.
	DefaultName = "outbox"
	// DefaultMaxPending bounds the PubAcks one Transport awaits at once.
	DefaultMaxPending = 1024
	// DefaultAckTimeout is how long one message's PubAck is awaited: the nats.go default
	// request timeout for JetStream.
	DefaultAckTimeout = 5 * time.Second
	// DefaultConnectTimeout bounds the first connection attempt, and each reconnect attempt.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultReconnectWait is the pause between reconnect attempts to one server.
	DefaultReconnectWait = 2 * time.Second
	// MaxPendingLimit is the largest MaxPending accepted.
	MaxPendingLimit = 1 << 16
)

// TypePlaceholder is what a subject template replaces with the message Type.
const TypePlaceholder = "{type}"

// Config configures a Transport. The zero value of every field means its documented default;
// the zero Config publishes to nats://127.0.0.1:4222 on subjects outbox.<Type>.
type Config struct {
	// Connection says how to reach the servers: URL (default nats://127.0.0.1:4222) or Conn, the
	// credentials, TLS and its files, Name (default "outbox", DefaultName), ConnectTimeout and
	// ReconnectWait.
	Connection

	// Subject is the subject template of messages that no route claims: {type} is replaced by
	// the message Type, e.g. "events.{type}". A Type containing dots yields several subject
	// tokens; one containing spaces or wildcards yields an invalid subject, and the message
	// fails permanently. Default "outbox.{type}" (DefaultSubject).
	Subject string `json:"subject,omitempty"`
	// Routes sends messages of a Type to their own subject (a subject, not a template). It is
	// consulted before Route. Default none.
	Routes map[string]string `json:"routes,omitempty"`
	// Route picks a subject for a message; "" means fall back to Subject. It is called for
	// messages whose Type is not in Routes, must be fast and safe for concurrent use, and must
	// not keep m. Default none.
	Route func(m *outbox.Message) string `json:"-"`
	// Stream, when set, is the stream every message must land in: it travels as the
	// Nats-Expected-Stream header, and a subject that another stream captures fails the
	// message (as an outage of the destination, see the package documentation) instead of
	// storing it where its duplicate window is unknown. Default none: whatever stream captures
	// the subject.
	Stream string `json:"stream,omitempty"`

	// RawPayload sends the message Payload alone as the body, instead of the envelope
	// {"id","eventType","payload","result","timestamp"}; the ID then also travels as the
	// outbox.id header. Default false.
	RawPayload bool `json:"raw_payload"`
	// MaxMessageBytes bounds one message as NATS counts it (headers and body); a larger one
	// fails permanently without being sent. Default, and upper bound: the server's
	// max_payload, learned at connect (1 MiB unless the server configures it).
	MaxMessageBytes int `json:"max_message_bytes,omitempty"`
	// MaxPending bounds the PubAcks this transport awaits at once, across all Publish calls; a
	// Publish waits for room before sending more. Default 1024 (DefaultMaxPending).
	MaxPending int `json:"max_pending,omitempty"`
	// AckTimeout is how long a published message's PubAck is awaited before the message is
	// reported failed (retryable: the stream may have stored it, and its duplicate window
	// drops the republish). Keep it below the relay's PublishTimeout. Default 5s
	// (DefaultAckTimeout).
	AckTimeout time.Duration `json:"ack_timeout,omitempty"`
	// KeepKeyOrder makes Publish keep the order of each Key even across failures: a Key's
	// messages are sent one after the other, each once the previous one's PubAck came, and
	// after a failure the Key's later messages in the call are not sent (reported failed).
	// Keys proceed concurrently, messages without a Key are pipelined. The Transport then
	// reports outbox.KeyOrderer, so a relay in Ordered mode hands it a Key's consecutive
	// messages in one call. Default false: every message is pipelined (see the package
	// documentation for what that keeps of the order).
	KeepKeyOrder bool `json:"keep_key_order"`
	// Logger receives the transport's logs: duplicates the stream dropped (debug), the
	// connection's disconnects and reconnects and the server's asynchronous errors (New's
	// connection only). Default zap.NewNop().
	Logger *zap.Logger `json:"-"`
}

func (c Config) withDefaults() Config {
	c.Connection = c.Connection.withDefaults(DefaultName)
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Validate names the first missing or wrong field. Zero values are valid where they have a
// default. It never repeats a secret.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "nats", Field: field, Problem: problem}
	}
	if err := c.validate(); err != nil { // the Connection's
		return err
	}
	if c.Subject != "" {
		if err := checkTemplate(c.Subject); err != nil {
			return bad("Subject", err.Error())
		}
	}
	for typ, subj := range c.Routes {
		if typ == "" {
			return bad("Routes", "has an empty message type")
		}
		if err := checkSubject(subj); err != nil {
			return bad(fmt.Sprintf("Routes[%q]", typ), err.Error())
		}
	}
	if c.Stream != "" && !validStreamName(c.Stream) {
		return bad("Stream", fmt.Sprintf("%q is not a stream name (no spaces, dots, *, >, / or \\)", c.Stream))
	}

	switch {
	case c.MaxMessageBytes < 0:
		return bad("MaxMessageBytes", "is negative")
	case c.MaxPending < 0:
		return bad("MaxPending", "is negative")
	case c.MaxPending > MaxPendingLimit:
		return bad("MaxPending", fmt.Sprintf("%d is above %d", c.MaxPending, MaxPendingLimit))
	case c.AckTimeout < 0:
		return bad("AckTimeout", "is negative")
	}
	return nil
}

// Format prints c as %v does (with %+v and %#v's flags), under every verb. Its secrets are a URL
// and outbox.Secret fields and print redacted; this is only for the other verbs: under %s, fmt
// prints a pointer field that has no methods, such as TLS, as what it points to, and a
// *tls.Config can hold private keys.
func (c Config) Format(f fmt.State, verb rune) {
	type plain Config // the fields, without this method
	type Config plain // under its own name, for %#v
	fmt.Fprintf(f, fmt.FormatString(f, 'v'), Config(c))
}

// checkURLs checks a comma-separated server list and reports whether any URL carries
// credentials. Its errors never repeat the URL, which might hold a password.
func checkURLs(s string) (hasAuth bool, err error) {
	for i, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			return false, fmt.Errorf("server %d of the list is empty", i+1)
		}
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw // nats.go accepts host:port
		}
		u, err := url.Parse(raw)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return false, fmt.Errorf("server %d is not a valid URL: %v", i+1, redactErr(err, secretsOf(raw)))
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return false, fmt.Errorf("server %d: scheme %q is not nats, tls, ws or wss", i+1, u.Scheme)
		}
		if u.Hostname() == "" {
			return false, fmt.Errorf("server %d has no host", i+1)
		}
		if u.User != nil {
			hasAuth = true
		}
	}
	return hasAuth, nil
}

// checkSeed accepts the seed of a user NKey. Its errors never repeat the seed.
func checkSeed(seed string) error {
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		return errors.New("is not a valid NKey seed")
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return errors.New("is not the seed of a user NKey (want one starting with SU)")
	}
	return nil
}

// validStreamName is what JetStream accepts as a stream name.
func validStreamName(s string) bool {
	return s != "" && len(s) <= 255 && !strings.ContainsAny(s, " \t\r\n.*>/\\")
}
