package mongo

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

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
// every option not known to be harmless are masked. URI's printers, the store's errors and
// the outbox command use it.
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
func redactError(err error, uri URI) error {
	if err == nil || uri == "" {
		return err
	}
	text := err.Error()
	redacted := backend.ScrubSecrets(text, URISecrets(uri.Reveal()))
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

// Format prints the config's fields under any verb, each by its own printer (URI redacted).
// It re-lists nothing: without it, fmt would print a *Config held in another value raw under a
// verb a pointer does not take (%s, %q, %t), skipping every field's own printer.
func (c Config) Format(f fmt.State, verb rune) {
	type fields Config // Config's fields, without this method
	formatFields(f, verb, "mongo.Config", fields(c))
}

// formatFields prints a struct value as fmt would print it under %v, %+v or %#v (named name),
// whatever the verb.
func formatFields(f fmt.State, verb rune, name string, fields any) {
	switch {
	case verb == 'v' && f.Flag('#'):
		s := fmt.Sprintf("%#v", fields)
		fmt.Fprint(f, name+s[strings.Index(s, "{"):])
	case verb == 'v' && f.Flag('+'):
		fmt.Fprintf(f, "%+v", fields)
	default:
		fmt.Fprintf(f, "%v", fields)
	}
}

// URI is a MongoDB connection string that never shows its secrets: under every fmt verb, in
// JSON and as text it prints as RedactURI does (password and option values not known to be
// harmless masked), so a Config holding one needs no printer of its own. Reveal returns the
// string itself, for the driver.
type URI string

// Reveal returns the connection string. Call it only to hand it to the driver.
func (u URI) Reveal() string { return string(u) }

// String returns the connection string redacted, or "" for an empty URI.
func (u URI) String() string { return redactURI(string(u)) }

// GoString is String quoted, for %#v.
func (u URI) GoString() string { return strconv.Quote(u.String()) }

// Format prints String under every verb, so %x or %q cannot bypass it.
func (u URI) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'q', verb == 'v' && f.Flag('#'):
		fmt.Fprint(f, u.GoString())
	default:
		fmt.Fprint(f, u.String())
	}
}

// MarshalJSON encodes String.
func (u URI) MarshalJSON() ([]byte, error) { return json.Marshal(u.String()) }

// MarshalText encodes String, for encoders that use encoding.TextMarshaler.
func (u URI) MarshalText() ([]byte, error) { return []byte(u.String()), nil }
