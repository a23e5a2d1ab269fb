package mongo

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/txoutbox/outbox/backend"
)

// harmlessOptions are the connection-string options whose values may be shown. Every other
// value — authMechanismProperties (which carries AWS_SESSION_TOKEN for MONGODB-AWS),
// tlsCertificateKeyFilePassword, and any option added later — is masked: an allow-list, so
// nothing new leaks by default. Option names are case-insensitive.
var harmlessOptions = []string{
	"appName", "authMechanism", "authSource", "compressors", "connect", "connectTimeoutMS",
	"directConnection", "heartbeatFrequencyMS", "journal", "loadBalanced", "localThresholdMS",
	"maxConnecting", "maxIdleTimeMS", "maxPoolSize", "maxStalenessSeconds", "minPoolSize",
	"readConcernLevel", "readPreference", "readPreferenceTags", "replicaSet", "retryReads",
	"retryWrites", "serverMonitoringMode", "serverSelectionTimeoutMS", "serverSelectionTryOnce",
	"socketTimeoutMS", "srvMaxHosts", "srvServiceName", "ssl", "timeoutMS", "tls",
	"tlsAllowInvalidCertificates", "tlsAllowInvalidHostnames", "tlsCAFile", "tlsCertificateKeyFile",
	"tlsDisableOCSPEndpointCheck", "tlsInsecure", "w", "waitQueueTimeoutMS", "wTimeoutMS",
	"zlibCompressionLevel",
}

// redactor is the one place this module decides what of a connection string may be shown.
var redactor = backend.URLRedactor{Harmless: harmlessOptions}

// hiddenURI stands in for a connection string that is not mongodb://…: all of it may be secret.
const hiddenURI = "(connection string hidden: not a mongodb:// URI)"

// RedactURI returns a connection string fit for logs and output: the password and the value of
// every option not known to be harmless are masked. Config's String, GoString and MarshalJSON,
// the store's errors and the outbox command use it.
func RedactURI(uri string) string {
	if out, ok := redactor.Redact(uri); ok {
		return out
	}
	return hiddenURI
}

// URISecrets returns the secrets RedactURI hides in uri, as written and unescaped, so they can
// be scrubbed from a driver's error text (backend.ScrubSecrets).
func URISecrets(uri string) []string { return redactor.Secrets(uri) }

// redactURI is RedactURI for an optional URI: "" stays "".
func redactURI(uri string) string {
	if uri == "" {
		return ""
	}
	return RedactURI(uri)
}

// redactError returns err with every secret of the URI (raw or unescaped) replaced, for errors
// from the driver that may quote the connection string or its options.
func redactError(err error, uri string) error {
	if err == nil || uri == "" {
		return err
	}
	text := err.Error()
	redacted := backend.ScrubSecrets(text, URISecrets(uri))
	if redacted == text {
		return err
	}
	return &redactedError{text: redacted, err: err}
}

// redactedError keeps errors.Is/As working on an error whose text had a secret removed.
type redactedError struct {
	text string
	err  error
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }

// String describes the config with the URI's secrets masked.
func (c Config) String() string {
	client := "nil"
	if c.Client != nil {
		client = "set"
	}
	return fmt.Sprintf("mongo.Config{URI: %q, Client: %s, Database: %q, Collection: %q, KeepDelivered: %t, DeliveredTTL: %s, MaxPayloadBytes: %d, WriteHooks: %d, ConnectTimeout: %s}",
		redactURI(c.URI), client, c.Database, c.Collection, c.KeepDelivered, c.DeliveredTTL, c.MaxPayloadBytes, len(c.WriteHooks), c.ConnectTimeout)
}

// GoString keeps %#v from printing the URI's secrets.
func (c Config) GoString() string { return c.String() }

// MarshalJSON encodes the config the way json.Marshal would, field names included, with the
// URI's secrets masked and the caller's client and hooks reduced to whether they are set: what a
// structured logger (zap.Reflect) writes.
func (c Config) MarshalJSON() ([]byte, error) {
	type shown struct {
		URI             string        `json:"URI,omitempty"`
		Client          string        `json:"Client,omitempty"`
		Database        string        `json:"Database,omitempty"`
		Collection      string        `json:"Collection,omitempty"`
		KeepDelivered   bool          `json:"KeepDelivered"`
		DeliveredTTL    time.Duration `json:"DeliveredTTL,omitempty"`
		MaxPayloadBytes int           `json:"MaxPayloadBytes,omitempty"`
		WriteHooks      int           `json:"WriteHooks,omitempty"`
		ConnectTimeout  time.Duration `json:"ConnectTimeout,omitempty"`
	}
	v := shown{
		URI: redactURI(c.URI), Database: c.Database, Collection: c.Collection, KeepDelivered: c.KeepDelivered,
		DeliveredTTL: c.DeliveredTTL, MaxPayloadBytes: c.MaxPayloadBytes, WriteHooks: len(c.WriteHooks),
		ConnectTimeout: c.ConnectTimeout,
	}
	if c.Client != nil {
		v.Client = "(caller's)"
	}
	return json.Marshal(v)
}
