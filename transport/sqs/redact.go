package sqs

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/txoutbox/outbox/backend"
)

// redactor hides what a queue URL or endpoint may carry besides its address: SQS URLs have no
// query, so every query value (a presigned token, say) is masked, and so would be user
// information, which Validate refuses anyway.
var redactor = backend.URLRedactor{}

// hiddenValue stands in for a queue name that looks like a mangled URL with user information or
// a query: it may hold a secret.
const hiddenValue = "(hidden: it may hold a secret)"

// redactURL returns an endpoint or queue URL fit for logs and errors. A queue name (no scheme)
// is returned as it is, unless it may hold a secret.
func redactURL(s string) string {
	if out, ok := redactor.Redact(s); ok {
		return out
	}
	if mayHoldSecret(s) {
		return hiddenValue
	}
	return s
}

// mayHoldSecret reports whether a string that is not a URL looks like one mangled, with user
// information or a query in it.
func mayHoldSecret(s string) bool { return strings.ContainsAny(s, "@:?&=#") }

// quoteName quotes a string given as a queue name for an error message, unless it may hold a
// secret: then it is not repeated.
func quoteName(s string) string {
	if mayHoldSecret(s) {
		return "the value " + hiddenValue
	}
	return fmt.Sprintf("%q", s)
}

// Format prints c as %v does (with %+v and %#v's flags), under every verb, with the queue URLs
// and the endpoint as redactURL shows them (user information and query values masked; a queue
// name that looks like a mangled URL hidden). Its secrets are outbox.Secret fields and print
// redacted anyway; under %s, fmt would also print a pointer field that has no methods, such as
// AWSConfig, as what it points to, and an aws.Config holds credentials.
func (c Config) Format(f fmt.State, verb rune) {
	type plain Config // the fields, without this method
	type Config plain // under its own name, for %#v
	fmt.Fprintf(f, fmt.FormatString(f, 'v'), Config(c.shown()))
}

// MarshalJSON encodes the config as json.Marshal would, field names included, with what Format
// hides hidden; the caller's client, AWS config and route function are left out.
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config // the fields, without this method
	return json.Marshal(plain(c.shown()))
}

// shown is c with its queue URLs and endpoint as redactURL shows them.
func (c Config) shown() Config {
	c.QueueURL, c.Endpoint = redactURL(c.QueueURL), redactURL(c.Endpoint)
	if c.Routes != nil {
		routes := make(map[string]string, len(c.Routes))
		for typ, q := range c.Routes {
			routes[typ] = redactURL(q)
		}
		c.Routes = routes
	}
	return c
}
