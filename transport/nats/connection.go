package nats

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/txoutbox/outbox"
)

// Connection is how a client reaches the servers: the settings a Transport (Config) and a
// Consumer (ConsumerConfig) share, embedded in both. Its secrets (the URL's user information,
// Password, Token, NKeySeed, Credentials) never print or marshal, whatever the verb: URL is a
// URL and the others are outbox.Secret fields.
//
// Give credentials in at most one way: User and Password, Token, NKeySeed, CredsFile or
// Credentials (or user information in URL). Or give Conn, a connection the service already
// has, and nothing else.
type Connection struct {
	// URL is the server, or a comma-separated list of servers of one cluster, e.g.
	// nats://10.0.0.1:4222,nats://10.0.0.2:4222. It may carry user:password@ or a token@.
	// Default nats://127.0.0.1:4222 (DefaultURL). Not allowed with Conn.
	URL URL `json:"url,omitempty"`
	// User and Password authenticate with a user name and password. Default none.
	User     string        `json:"user,omitempty"`
	Password outbox.Secret `json:"password,omitempty"`
	// Token authenticates with a token. Default none.
	Token outbox.Secret `json:"token,omitempty"`
	// NKeySeed is the seed of a user NKey (the text starting with SU), used to sign the server's
	// challenge. Default none.
	NKeySeed outbox.Secret `json:"nkey_seed,omitempty"`
	// CredsFile is the path of a .creds file (a user JWT and its NKey seed) read at every
	// connect. Default none.
	CredsFile string `json:"creds_file,omitempty"`
	// Credentials is the content of a .creds file, for deployments that pass it in a secret
	// rather than a file. Default none.
	Credentials outbox.Secret `json:"credentials,omitempty"`
	// TLS configures TLS to the servers (client certificates, roots). Default: TLS only when
	// the URL scheme is tls://. Not allowed with Conn. It may hold private keys, so it is never
	// marshalled (and prints as a pointer).
	TLS *tls.Config `json:"-"`
	// CAFile is a PEM file of the CAs that verify the servers, and CertFile and KeyFile a PEM
	// client certificate and its key (given both or neither): TLS from files, for deployments
	// configured by environment. They turn TLS on. Default none. Not allowed with TLS or Conn.
	CAFile   string `json:"ca_file,omitempty"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// Name is the connection name shown by the server's monitoring. Default "outbox" for a
	// Transport (DefaultName), "outbox-consumer" for a Consumer (DefaultConsumerName).
	Name string `json:"name,omitempty"`
	// ConnectTimeout bounds the first connection attempt, which New makes, and each reconnect.
	// Default 5s (DefaultConnectTimeout).
	ConnectTimeout time.Duration `json:"connect_timeout,omitempty"`
	// ReconnectWait is the pause between reconnect attempts to one server; the connection
	// reconnects forever. Default 2s (DefaultReconnectWait).
	ReconnectWait time.Duration `json:"reconnect_wait,omitempty"`

	// Conn is your own connection, used as it is; Close (a Consumer's Stop) leaves it open. It
	// must support headers (nats-server 2.2 or later). Reconnecting is then the connection's
	// own: nats.go reconnects as its options say, and while it is away publishes fail and pull
	// requests wait; a Conn that closed for good is never replaced (give a new Transport or
	// Consumer a new connection). Default: a connection made from the fields above, with
	// unlimited reconnects and no buffering of publishes while reconnecting (they fail at once,
	// so the relay pauses instead of piling up messages).
	Conn *natsgo.Conn `json:"-"`
}

// withDefaults fills the zero fields of a connection to be made, naming it name when it has no
// Name. A Conn is used as it is.
func (c Connection) withDefaults(name string) Connection {
	if c.Conn != nil {
		return c
	}
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Name == "" {
		c.Name = name
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	return c
}

// validate names the first missing or wrong field. It never repeats a secret.
func (c Connection) validate() error {
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
		case len(c.authFields()) > 0:
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
		if urlAuth, err = checkURLs(string(c.URL)); err != nil {
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
		if err := checkSeed(c.NKeySeed.Reveal()); err != nil {
			return bad("NKeySeed", err.Error())
		}
	}
	if c.Credentials != "" {
		if _, err := nkeys.ParseDecoratedJWT([]byte(c.Credentials.Reveal())); err != nil {
			return bad("Credentials", "holds no user JWT (want the content of a .creds file)")
		}
		if _, err := nkeys.ParseDecoratedNKey([]byte(c.Credentials.Reveal())); err != nil {
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

	return nil
}

// authFields names the credential fields that are set, in a fixed order.
func (c Connection) authFields() []string {
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

// URL is a server URL, or a comma-separated list of them, that never shows its secrets: under
// every fmt verb, in JSON and as text it prints with each server's user information (a
// user:password or a token) and query replaced, so a config holding one needs no printer of
// its own. Reveal returns the URL itself, for nats.go.
type URL string

// Reveal returns the URL. Call it only to hand it to nats.go.
func (u URL) Reveal() string { return string(u) }

// String returns the URL redacted, or "" for an empty URL.
func (u URL) String() string { return redactURLs(string(u)) }

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
