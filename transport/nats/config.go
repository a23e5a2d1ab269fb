package nats

import (
	"crypto/tls"
	"encoding/json"
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
//
// Give credentials in at most one way: User and Password, Token, NKeySeed, CredsFile or
// Credentials (or user information in URL). None of them ever appears in String, GoString,
// %v, JSON or an error.
type Config struct {
	// URL is the server, or a comma-separated list of servers of one cluster, e.g.
	// nats://10.0.0.1:4222,nats://10.0.0.2:4222. It may carry user:password@ or a token@.
	// Default nats://127.0.0.1:4222 (DefaultURL). Not allowed with Conn.
	URL string
	// User and Password authenticate with a user name and password. Default none.
	User     string
	Password string
	// Token authenticates with a token. Default none.
	Token string
	// NKeySeed is the seed of a user NKey (the text starting with SU), used to sign the server's
	// challenge. Default none.
	NKeySeed string
	// CredsFile is the path of a .creds file (a user JWT and its NKey seed) read at every
	// connect. Default none.
	CredsFile string
	// Credentials is the content of a .creds file, for deployments that pass it in a secret
	// rather than a file. Default none.
	Credentials string
	// TLS configures TLS to the servers (client certificates, roots). Default: TLS only when
	// the URL scheme is tls://. Not allowed with Conn.
	TLS *tls.Config
	// CAFile is a PEM file of the CAs that verify the servers, and CertFile and KeyFile a PEM
	// client certificate and its key (given both or neither): TLS from files, for deployments
	// configured by environment. They turn TLS on. Default none. Not allowed with TLS or Conn.
	CAFile   string
	CertFile string
	KeyFile  string
	// Name is the connection name shown by the server's monitoring. Default "outbox".
	Name string
	// ConnectTimeout bounds the first connection attempt, which New makes, and each reconnect.
	// Default 5s (DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// ReconnectWait is the pause between reconnect attempts to one server; the connection
	// reconnects forever. Default 2s (DefaultReconnectWait).
	ReconnectWait time.Duration

	// Conn is your own connection, used as it is; Close leaves it open. It must support headers
	// (nats-server 2.2 or later). Default: a connection New makes from the fields above, with
	// unlimited reconnects and no buffering of publishes while reconnecting (they fail at once,
	// so the relay pauses instead of piling up messages).
	Conn *natsgo.Conn

	// Subject is the subject template of messages that no route claims: {type} is replaced by
	// the message Type, e.g. "events.{type}". A Type containing dots yields several subject
	// tokens; one containing spaces or wildcards yields an invalid subject, and the message
	// fails permanently. Default "outbox.{type}" (DefaultSubject).
	Subject string
	// Routes sends messages of a Type to their own subject (a subject, not a template). It is
	// consulted before Route. Default none.
	Routes map[string]string
	// Route picks a subject for a message; "" means fall back to Subject. It is called for
	// messages whose Type is not in Routes, must be fast and safe for concurrent use, and must
	// not keep m. Default none.
	Route func(m *outbox.Message) string
	// Stream, when set, is the stream every message must land in: it travels as the
	// Nats-Expected-Stream header, and a subject that another stream captures fails the
	// message (as an outage of the destination, see the package documentation) instead of
	// storing it where its duplicate window is unknown. Default none: whatever stream captures
	// the subject.
	Stream string

	// RawPayload sends the message Payload alone as the body, instead of the envelope
	// {"id","eventType","payload","result","timestamp"}; the ID then also travels as the
	// outbox.id header. Default false.
	RawPayload bool
	// MaxMessageBytes bounds one message as NATS counts it (headers and body); a larger one
	// fails permanently without being sent. Default, and upper bound: the server's
	// max_payload, learned at connect (1 MiB unless the server configures it).
	MaxMessageBytes int
	// MaxPending bounds the PubAcks this transport awaits at once, across all Publish calls; a
	// Publish waits for room before sending more. Default 1024 (DefaultMaxPending).
	MaxPending int
	// AckTimeout is how long a published message's PubAck is awaited before the message is
	// reported failed (retryable: the stream may have stored it, and its duplicate window
	// drops the republish). Keep it below the relay's PublishTimeout. Default 5s
	// (DefaultAckTimeout).
	AckTimeout time.Duration
	// KeepKeyOrder makes Publish keep the order of each Key even across failures: a Key's
	// messages are sent one after the other, each once the previous one's PubAck came, and
	// after a failure the Key's later messages in the call are not sent (reported failed).
	// Keys proceed concurrently, messages without a Key are pipelined. The Transport then
	// reports outbox.KeyOrderer, so a relay in Ordered mode hands it a Key's consecutive
	// messages in one call. Default false: every message is pipelined (see the package
	// documentation for what that keeps of the order).
	KeepKeyOrder bool
	// Logger receives the transport's logs: duplicates the stream dropped (debug), the
	// connection's disconnects and reconnects and the server's asynchronous errors (New's
	// connection only). Default zap.NewNop().
	Logger *zap.Logger
}

func (c Config) withDefaults() Config {
	if c.URL == "" && c.Conn == nil {
		c.URL = DefaultURL
	}
	if c.Name == "" && c.Conn == nil {
		c.Name = DefaultName
	}
	if c.ConnectTimeout == 0 && c.Conn == nil {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ReconnectWait == 0 && c.Conn == nil {
		c.ReconnectWait = DefaultReconnectWait
	}
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
	if c.Conn != nil {
		switch {
		case c.URL != "":
			return bad("URL", "is set together with Conn (give one)")
		case c.TLS != nil:
			return bad("TLS", "is set together with Conn (configure TLS on the connection)")
		case c.CAFile != "" || c.CertFile != "" || c.KeyFile != "":
			return bad("CAFile", "TLS files are set together with Conn (configure TLS on the connection)")
		case c.authCount() > 0:
			return bad(c.authFields()[0], "is set together with Conn (configure credentials on the connection)")
		case c.Name != "":
			return bad("Name", "is set together with Conn (name the connection when you connect it)")
		case c.ConnectTimeout != 0:
			return bad("ConnectTimeout", "is set together with Conn (it applies to the connection New makes)")
		case c.ReconnectWait != 0:
			return bad("ReconnectWait", "is set together with Conn (it applies to the connection New makes)")
		}
	}
	urlAuth := false
	if c.URL != "" {
		var err error
		if urlAuth, err = checkURLs(c.URL); err != nil {
			return bad("URL", err.Error())
		}
	}
	switch fields := c.authFields(); {
	case len(fields) > 1:
		return bad(fields[1], "is set together with "+fields[0]+" (give one way to authenticate)")
	case len(fields) == 1 && urlAuth:
		return bad(fields[0], "is set together with credentials in URL (give one way to authenticate)")
	case c.Password != "" && c.User == "":
		return bad("User", "is empty while Password is set")
	}
	if c.NKeySeed != "" {
		if err := checkSeed(c.NKeySeed); err != nil {
			return bad("NKeySeed", err.Error())
		}
	}
	if c.Credentials != "" {
		if _, err := nkeys.ParseDecoratedJWT([]byte(c.Credentials)); err != nil {
			return bad("Credentials", "holds no user JWT (want the content of a .creds file)")
		}
		if _, err := nkeys.ParseDecoratedNKey([]byte(c.Credentials)); err != nil {
			return bad("Credentials", "holds no NKey seed (want the content of a .creds file)")
		}
	}
	switch {
	case c.TLS != nil && (c.CAFile != "" || c.CertFile != "" || c.KeyFile != ""):
		return bad("CAFile", "TLS files are set together with TLS (put them in the tls.Config)")
	case c.CertFile != "" && c.KeyFile == "":
		return bad("KeyFile", "is empty while CertFile is set")
	case c.KeyFile != "" && c.CertFile == "":
		return bad("CertFile", "is empty while KeyFile is set")
	case c.ConnectTimeout < 0:
		return bad("ConnectTimeout", "is negative")
	case c.ReconnectWait < 0:
		return bad("ReconnectWait", "is negative")
	case strings.ContainsAny(c.Name, "\r\n"):
		return bad("Name", "contains a line break")
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

// authFields names the credential fields that are set, in a fixed order.
func (c Config) authFields() []string {
	var f []string
	if c.User != "" || c.Password != "" {
		f = append(f, "User")
	}
	if c.Token != "" {
		f = append(f, "Token")
	}
	if c.NKeySeed != "" {
		f = append(f, "NKeySeed")
	}
	if c.CredsFile != "" {
		f = append(f, "CredsFile")
	}
	if c.Credentials != "" {
		f = append(f, "Credentials")
	}
	return f
}

func (c Config) authCount() int { return len(c.authFields()) }

// auth describes the credentials without revealing them.
func (c Config) auth() string {
	switch {
	case c.Conn != nil:
		return "own-connection"
	case c.User != "":
		return "user-password(redacted)"
	case c.Token != "":
		return "token(redacted)"
	case c.NKeySeed != "":
		return "nkey(redacted)"
	case c.CredsFile != "":
		return "creds-file(" + c.CredsFile + ")"
	case c.Credentials != "":
		return "credentials(redacted)"
	case c.urlHasAuth():
		return "url(redacted)"
	}
	return "none"
}

func (c Config) urlHasAuth() bool {
	ok, _ := checkURLs(c.URL)
	return ok
}

// String describes the config without its secrets, so it can be logged.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("nats.Config{")
	if c.Conn != nil {
		b.WriteString("Conn:own")
	} else {
		fmt.Fprintf(&b, "URL:%q", redactURLs(c.URL))
	}
	fmt.Fprintf(&b, " Auth:%s", c.auth())
	if c.TLS != nil {
		b.WriteString(" TLS:own")
	}
	if c.CAFile != "" || c.CertFile != "" {
		fmt.Fprintf(&b, " CAFile:%q CertFile:%q KeyFile:%q", c.CAFile, c.CertFile, c.KeyFile)
	}
	fmt.Fprintf(&b, " Subject:%q", c.Subject)
	if len(c.Routes) > 0 {
		fmt.Fprintf(&b, " Routes:%d", len(c.Routes))
	}
	if c.Route != nil {
		b.WriteString(" Route:func")
	}
	if c.Stream != "" {
		fmt.Fprintf(&b, " Stream:%q", c.Stream)
	}
	fmt.Fprintf(&b, " RawPayload:%t MaxMessageBytes:%d MaxPending:%d AckTimeout:%s KeepKeyOrder:%t}",
		c.RawPayload, c.MaxMessageBytes, c.MaxPending, c.AckTimeout, c.KeepKeyOrder)
	return b.String()
}

// GoString keeps %#v from printing the secrets too.
func (c Config) GoString() string { return c.String() }

// MarshalJSON keeps json.Marshal from printing the secrets: it writes the fields String shows.
func (c Config) MarshalJSON() ([]byte, error) {
	out := struct {
		URL             string `json:"url,omitempty"`
		Conn            bool   `json:"own_conn,omitempty"`
		Auth            string `json:"auth"`
		TLS             bool   `json:"tls,omitempty"`
		CAFile          string `json:"ca_file,omitempty"`
		CertFile        string `json:"cert_file,omitempty"`
		KeyFile         string `json:"key_file,omitempty"`
		Name            string `json:"name,omitempty"`
		Subject         string `json:"subject,omitempty"`
		Routes          int    `json:"routes,omitempty"`
		Route           bool   `json:"route_func,omitempty"`
		Stream          string `json:"stream,omitempty"`
		RawPayload      bool   `json:"raw_payload"`
		MaxMessageBytes int    `json:"max_message_bytes,omitempty"`
		MaxPending      int    `json:"max_pending,omitempty"`
		AckTimeout      string `json:"ack_timeout,omitempty"`
		KeepKeyOrder    bool   `json:"keep_key_order"`
	}{
		URL: redactURLs(c.URL), Conn: c.Conn != nil, Auth: c.auth(), TLS: c.TLS != nil, Name: c.Name,
		CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		Subject: c.Subject, Routes: len(c.Routes), Route: c.Route != nil, Stream: c.Stream,
		RawPayload: c.RawPayload, MaxMessageBytes: c.MaxMessageBytes, MaxPending: c.MaxPending,
		KeepKeyOrder: c.KeepKeyOrder,
	}
	if c.AckTimeout != 0 {
		out.AckTimeout = c.AckTimeout.String()
	}
	return json.Marshal(out)
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
