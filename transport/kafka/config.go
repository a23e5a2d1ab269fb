package kafka

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
)

// Defaults and limits of Config.
const (
	// DefaultClientID is the client.id the producer announces to the brokers.
	DefaultClientID = "outbox"
	// DefaultMaxMessageBytes bounds one record as the broker counts it: 1 MiB, just below the
	// broker's default message.max.bytes (1048588), so a record that fits is accepted by a topic
	// with the default limit.
	DefaultMaxMessageBytes = 1 << 20
	// MaxMessageBytesLimit is the largest MaxMessageBytes accepted (64 MiB).
	MaxMessageBytesLimit = 64 << 20
	// DefaultConcurrency is how many flushes are in flight at once by default, each on a
	// producer client of its own.
	DefaultConcurrency = 4
	// MaxConcurrency bounds Concurrency: each unit is a producer client with its own
	// connections and producer ID.
	MaxConcurrency = 64
	// DefaultDeliveryTimeout bounds how long the producer keeps trying to deliver a record. It
	// stays below the relay's default PublishTimeout (15s), so an outage is reported as one
	// rather than as a cancelled publish.
	DefaultDeliveryTimeout = 10 * time.Second
	// DefaultDialTimeout bounds connecting to one broker.
	DefaultDialTimeout = 5 * time.Second
	// DefaultCompression is the codec of record batches: none.
	DefaultCompression = CompressionNone
	// maxWaveRecords is how many records one flush sends at most; a longer Publish is produced
	// in several flushes.
	maxWaveRecords = 10000
)

// SASL mechanisms.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Compression codecs.
const (
	CompressionNone   = "none"
	CompressionGzip   = "gzip"
	CompressionSnappy = "snappy"
	CompressionLZ4    = "lz4"
	CompressionZstd   = "zstd"
)

// Connection is how a client reaches the brokers: the settings a Transport (Config) and a
// Consumer (ConsumerConfig) share, embedded in both. Secrets are outbox.Secret fields, so a
// Connection prints and marshals without them, whatever the verb.
type Connection struct {
	// Brokers are the seed brokers, host:port each (e.g. 127.0.0.1:9092). Required. They carry
	// no credentials: give those in SASL.
	Brokers BrokerList `json:"brokers"`
	// ClientID is the client.id sent to the brokers (quotas and broker logs use it).
	// Default "outbox" (DefaultClientID).
	ClientID string `json:"client_id,omitempty"`
	// SASL authenticates to the brokers. Default none.
	SASL *SASL `json:"sasl,omitempty"`
	// TLS, when set, connects to the brokers with TLS using this configuration (it is cloned;
	// ServerName defaults to each broker's host). Default plaintext. It may hold private keys,
	// so it is never marshalled (and prints as a pointer).
	TLS *tls.Config `json:"-"`
	// DialTimeout bounds connecting to one broker. Default 5s (DefaultDialTimeout).
	DialTimeout time.Duration `json:"dial_timeout,omitempty"`
}

// BrokerList is a list of seed brokers that, printed or marshalled, hides the user
// information of an entry that carries some (which Validate refuses, but a config can be
// printed before it is validated).
type BrokerList []string

// Format prints the list with user information redacted, under every verb.
func (b BrokerList) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprintf(f, "%#v", []string(b.safe()))
		return
	}
	fmt.Fprintf(f, "%q", []string(b.safe()))
}

// MarshalJSON writes the list with user information redacted.
func (b BrokerList) MarshalJSON() ([]byte, error) { return json.Marshal([]string(b.safe())) }

func (b BrokerList) safe() BrokerList {
	if b == nil {
		return nil
	}
	out := make(BrokerList, len(b))
	for i, s := range b {
		if at := strings.LastIndex(s, "@"); at >= 0 {
			s = "xxxxx@" + s[at+1:]
		}
		out[i] = s
	}
	return out
}

// Config configures a Transport. The zero value of every field means its documented default.
type Config struct {
	// Connection says how to reach the brokers: Brokers (required), ClientID, SASL, TLS and
	// DialTimeout.
	Connection

	// Topic is where messages go that no route claims. Required unless Routes or Route is set;
	// a message no route claims then fails permanently.
	Topic string `json:"topic,omitempty"`
	// Routes sends messages of a Type to their own topic. It is consulted before Route.
	// Default none.
	Routes map[string]string `json:"routes,omitempty"`
	// Route picks a topic for a message; "" means fall back to Topic. It is called for
	// messages whose Type is not in Routes, must be fast and safe for concurrent use, and must
	// not keep m. A name Kafka cannot accept fails the message permanently. Default none.
	Route func(m *outbox.Message) string `json:"-"`

	// RawPayload sends the message Payload alone as the record value, instead of the envelope
	// {"id","eventType","payload","result","timestamp"}. The ID then travels in the outbox.id
	// header. Default false.
	RawPayload bool `json:"raw_payload"`

	// MaxMessageBytes bounds one record as Kafka counts it in a batch of its own: key, value,
	// header names and values, and the record and batch framing. A larger message fails
	// permanently without being sent. It is also the producer's largest batch. Keep it at or
	// below the topics' max.message.bytes. Default 1 MiB (DefaultMaxMessageBytes); at most
	// 64 MiB.
	MaxMessageBytes int `json:"max_message_bytes,omitempty"`
	// Compression compresses record batches: none, gzip, snappy, lz4 or zstd. Default none
	// (DefaultCompression).
	Compression string `json:"compression,omitempty"`
	// Concurrency is how many flushes are in flight at once, each on a producer client of its
	// own. Concurrent Publish calls share a flush (and its batches); while one flush waits for
	// the brokers, the next fills. Default 4 (DefaultConcurrency); at most 64.
	Concurrency int `json:"concurrency,omitempty"`
	// DeliveryTimeout bounds how long the producer tries to deliver a record, its own resends
	// of a batch included, before reporting it failed. Default 10s (DefaultDeliveryTimeout).
	// Keep it below the relay's PublishTimeout.
	DeliveryTimeout time.Duration `json:"delivery_timeout,omitempty"`
}

// Format prints c as %v does (with %+v and %#v's flags), under every verb. Its secrets are
// outbox.Secret fields and print redacted; this is only for the other verbs: under %s, fmt
// prints a pointer field that has no methods, such as TLS, as what it points to, and a
// *tls.Config can hold private keys.
func (c Config) Format(f fmt.State, verb rune) {
	type plain Config // the fields, without this method
	type Config plain // under its own name, for %#v
	fmt.Fprintf(f, fmt.FormatString(f, 'v'), Config(c))
}

// SASL holds the credentials a client authenticates with. The password is an outbox.Secret:
// it never prints or marshals.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. Required.
	Mechanism string `json:"mechanism"`
	// User and Password are the credentials. Both required.
	User     string        `json:"user"`
	Password outbox.Secret `json:"password"`
}

func (c Connection) withDefaults() Connection {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	return c
}

func (c Config) withDefaults() Config {
	c.Connection = c.Connection.withDefaults()
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.DeliveryTimeout == 0 {
		c.DeliveryTimeout = DefaultDeliveryTimeout
	}
	return c
}

// topicName is what Kafka accepts as a topic name.
var topicName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)

// checkTopic says why Kafka would refuse a topic name, or returns nil.
func checkTopic(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("is empty")
	case name == "." || name == "..":
		return fmt.Errorf("%q is not a valid topic name", name)
	case !topicName.MatchString(name):
		return fmt.Errorf("%q is not a valid topic name (1 to 249 of A-Z a-z 0-9 . _ -)", name)
	}
	return nil
}

// clientIDChars is what the transport accepts as a client.id: printable ASCII, so that it reads
// well in broker logs and quota names.
var clientIDChars = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)

// Validate names the first missing or wrong field. Zero values are valid where they have a
// default. It never repeats a secret.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "kafka", Field: field, Problem: problem}
	}
	if len(c.Brokers) == 0 {
		return bad("Brokers", "is empty (give at least one host:port)")
	}
	for i, b := range c.Brokers {
		if err := checkBroker(b); err != nil {
			return bad(fmt.Sprintf("Brokers[%d]", i), err.Error())
		}
	}
	if c.Topic == "" && len(c.Routes) == 0 && c.Route == nil {
		return bad("Topic", "is empty (set Topic, Routes or Route)")
	}
	if c.Topic != "" {
		if err := checkTopic(c.Topic); err != nil {
			return bad("Topic", err.Error())
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(c.Routes)) {
		if typ == "" {
			return bad("Routes", "has an empty message type")
		}
		if err := checkTopic(c.Routes[typ]); err != nil {
			return bad(fmt.Sprintf("Routes[%q]", typ), err.Error())
		}
	}
	if c.ClientID != "" && !clientIDChars.MatchString(c.ClientID) {
		return bad("ClientID", "must be 1 to 255 printable ASCII characters without spaces")
	}
	if s := c.SASL; s != nil {
		switch {
		case s.Mechanism != SASLPlain && s.Mechanism != SASLScramSHA256 && s.Mechanism != SASLScramSHA512:
			return bad("SASL.Mechanism", fmt.Sprintf("%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", s.Mechanism))
		case s.User == "":
			return bad("SASL.User", "is empty")
		case s.Password == "":
			return bad("SASL.Password", "is empty")
		}
	}
	switch {
	case c.MaxMessageBytes < 0:
		return bad("MaxMessageBytes", "is negative")
	case c.MaxMessageBytes > 0 && c.MaxMessageBytes < minMessageBytes:
		return bad("MaxMessageBytes", fmt.Sprintf("%d is below %d, the framing of a record alone", c.MaxMessageBytes, minMessageBytes))
	case c.MaxMessageBytes > MaxMessageBytesLimit:
		return bad("MaxMessageBytes", fmt.Sprintf("%d is above %d", c.MaxMessageBytes, MaxMessageBytesLimit))
	case c.Compression != "" && compressionCodec(c.Compression) == nil:
		return bad("Compression", fmt.Sprintf("%q is not one of none, gzip, snappy, lz4, zstd", c.Compression))
	case c.Concurrency < 0:
		return bad("Concurrency", "is negative")
	case c.Concurrency > MaxConcurrency:
		return bad("Concurrency", fmt.Sprintf("%d is above %d", c.Concurrency, MaxConcurrency))
	case c.DeliveryTimeout < 0:
		return bad("DeliveryTimeout", "is negative")
	case c.DeliveryTimeout > 0 && c.DeliveryTimeout < time.Second:
		return bad("DeliveryTimeout", fmt.Sprintf("%v is below 1s, the least the producer accepts", c.DeliveryTimeout))
	case c.DialTimeout < 0:
		return bad("DialTimeout", "is negative")
	}
	return nil
}

// checkBroker accepts host:port. It never repeats the value when it looks like it carries
// credentials (a URL with user information).
func checkBroker(b string) error {
	if strings.Contains(b, "@") {
		return fmt.Errorf("must be host:port without user information (give credentials in SASL)")
	}
	if strings.Contains(b, "://") {
		return fmt.Errorf("%q must be host:port, not a URL", b)
	}
	host, port, err := net.SplitHostPort(b)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", b)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q has no valid port", b)
	}
	return nil
}
