package mongo

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Documented defaults of Config, exported so that docs, the CLI and other wiring cannot drift
// from them.
const (
	// DefaultCollection is the outbox collection; its per-key sequence counters live in
	// DefaultCollection+"_seq".
	DefaultCollection = "outbox"
	// DefaultConnectTimeout bounds New's connect and ping.
	DefaultConnectTimeout = 10 * time.Second
)

// maxDocumentPayload bounds MaxPayloadBytes: a MongoDB document holds at most 16 MiB, and the
// message's other fields need some of it.
const maxDocumentPayload = 15 << 20

// Config configures a Store. Set URI or Client, not both.
type Config struct {
	// URI is the connection string, e.g. mongodb://user:pass@host:27017/app?replicaSet=rs0.
	// The Store connects with it and disconnects on Close. It prints with its password and
	// option values masked (see URI), so neither appears in %v, JSON or errors. Required
	// unless Client is set.
	URI URI
	// Client is the caller's own connected client. The Store uses it and never disconnects it.
	// Default nil (connect to URI).
	Client *mongo.Client `json:"-"`
	// Database holds the outbox collection. Default: the database named in URI's path; required
	// when there is none or when Client is set.
	Database string
	// Collection is the outbox collection; its per-key sequence counters live in
	// Collection+"_seq". Default "outbox" (DefaultCollection).
	Collection string
	// KeepDelivered keeps acknowledged messages with status "delivered" (status tracking, and
	// Retention deletes them later). Default false: Ack deletes them.
	KeepDelivered bool
	// DeliveredTTL, when positive, asks the server to delete delivered messages this long after
	// delivery with a TTL index (needs KeepDelivered). Servers without TTL indexes get a plain
	// index, and Retention (the relay's RetainDelivered) does the deleting. Default 0: no TTL.
	DeliveredTTL time.Duration
	// MaxPayloadBytes bounds a message's payload plus result. Default outbox.DefaultMaxPayloadBytes;
	// at most 15 MiB (a MongoDB document holds 16 MiB).
	MaxPayloadBytes int
	// WriteHooks run on every message Add writes, before validation. Default none.
	WriteHooks []backend.WriteHook `json:"-"`
	// ConnectTimeout bounds New's connect and ping. Default 10s (DefaultConnectTimeout).
	ConnectTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Collection == "" {
		c.Collection = DefaultCollection
	}
	if c.Database == "" && c.Client == nil {
		c.Database = uriDatabase(c.URI.Reveal())
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = outbox.DefaultMaxPayloadBytes
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	return c
}

// Validate names the first field that is wrong. Defaults are applied first, so a zero field
// that has a default is valid.
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "mongo", Field: field, Problem: problem}
	}
	switch {
	case c.URI == "" && c.Client == nil:
		return bad("URI", "is empty (set URI or Client)")
	case c.URI != "" && c.Client != nil:
		return bad("URI", "is set together with Client (set one)")
	case c.URI != "" && !strings.HasPrefix(c.URI.Reveal(), "mongodb://") && !strings.HasPrefix(c.URI.Reveal(), "mongodb+srv://"):
		return bad("URI", "must start with mongodb:// or mongodb+srv://")
	case c.Database == "":
		return bad("Database", "is empty (and URI names no database)")
	case c.DeliveredTTL < 0:
		return bad("DeliveredTTL", "is negative")
	case c.DeliveredTTL > 0 && !c.KeepDelivered:
		return bad("DeliveredTTL", "needs KeepDelivered (without it, Ack deletes messages at once)")
	case c.DeliveredTTL > 0 && c.DeliveredTTL < time.Second:
		return bad("DeliveredTTL", "is under the 1s resolution of TTL indexes")
	case c.MaxPayloadBytes < 0:
		return bad("MaxPayloadBytes", "is negative")
	case c.MaxPayloadBytes > maxDocumentPayload:
		return bad("MaxPayloadBytes", fmt.Sprintf("%d exceeds %d (a MongoDB document holds 16 MiB)", c.MaxPayloadBytes, maxDocumentPayload))
	case c.ConnectTimeout < 0:
		return bad("ConnectTimeout", "is negative")
	}
	// Names safe in every namespace, log line and shell command.
	if err := backend.CheckIdentifier("mongo", "Database", c.Database); err != nil {
		return err
	}
	if err := backend.CheckIdentifier("mongo", "Collection", c.Collection); err != nil {
		return err
	}
	for i, h := range c.WriteHooks {
		if h == nil {
			return bad(fmt.Sprintf("WriteHooks[%d]", i), "is nil")
		}
	}
	return nil
}

// uriDatabase returns the database named in a connection string's path, or "".
func uriDatabase(uri string) string {
	rest, ok := strings.CutPrefix(uri, "mongodb://")
	if !ok {
		if rest, ok = strings.CutPrefix(uri, "mongodb+srv://"); !ok {
			return ""
		}
	}
	// The host list may hold several comma-separated hosts, which url.Parse rejects; the
	// database is between the first '/' and the '?'.
	_, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	path, _, _ = strings.Cut(path, "?")
	db, err := url.PathUnescape(path)
	if err != nil {
		return ""
	}
	return db
}
