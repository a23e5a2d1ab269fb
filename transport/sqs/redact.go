package sqs

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

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

// String describes the config without its secrets, so it can be logged: the static credentials
// show only as present.
func (c Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sqs.Config{QueueURL:%q", redactURL(c.QueueURL))
	if len(c.Routes) > 0 {
		fmt.Fprintf(&b, " Routes:%d", len(c.Routes))
	}
	if c.Route != nil {
		b.WriteString(" Route:func")
	}
	switch {
	case c.Client != nil:
		b.WriteString(" Client:own")
	case c.AWSConfig != nil:
		b.WriteString(" AWSConfig:own")
	default:
		fmt.Fprintf(&b, " Region:%q Endpoint:%q", c.Region, redactURL(c.Endpoint))
		if c.AccessKeyID != "" || c.SecretAccessKey != "" || c.SessionToken != "" {
			b.WriteString(" Credentials:static(redacted)")
		} else {
			b.WriteString(" Credentials:default-chain")
		}
	}
	fmt.Fprintf(&b, " RawPayload:%t MaxMessageBytes:%d MaxBatchBytes:%d Concurrency:%d}",
		c.RawPayload, c.MaxMessageBytes, c.MaxBatchBytes, c.Concurrency)
	return b.String()
}

// GoString keeps %#v from printing the secrets too.
func (c Config) GoString() string { return c.String() }

// MarshalJSON encodes the config the way json.Marshal would, field names included, with the
// secret key and session token masked (the access key ID is an identifier, not a secret, and
// shows) and the caller's client, AWS config and route function reduced to whether they are set:
// what a structured logger (zap.Reflect) writes.
func (c Config) MarshalJSON() ([]byte, error) {
	type shown struct {
		QueueURL        string            `json:"QueueURL,omitempty"`
		Routes          map[string]string `json:"Routes,omitempty"`
		Route           string            `json:"Route,omitempty"`
		Region          string            `json:"Region,omitempty"`
		AccessKeyID     string            `json:"AccessKeyID,omitempty"`
		SecretAccessKey string            `json:"SecretAccessKey,omitempty"`
		SessionToken    string            `json:"SessionToken,omitempty"`
		Endpoint        string            `json:"Endpoint,omitempty"`
		AWSConfig       string            `json:"AWSConfig,omitempty"`
		Client          string            `json:"Client,omitempty"`
		RawPayload      bool              `json:"RawPayload"`
		DefaultGroupID  string            `json:"DefaultGroupID,omitempty"`
		MaxMessageBytes int               `json:"MaxMessageBytes,omitempty"`
		MaxBatchBytes   int               `json:"MaxBatchBytes,omitempty"`
		Concurrency     int               `json:"Concurrency,omitempty"`
	}
	v := shown{
		QueueURL: redactURL(c.QueueURL), Region: c.Region, AccessKeyID: c.AccessKeyID,
		Endpoint: redactURL(c.Endpoint), RawPayload: c.RawPayload, DefaultGroupID: c.DefaultGroupID,
		MaxMessageBytes: c.MaxMessageBytes, MaxBatchBytes: c.MaxBatchBytes, Concurrency: c.Concurrency,
	}
	if len(c.Routes) > 0 {
		v.Routes = make(map[string]string, len(c.Routes))
		for typ, q := range c.Routes {
			v.Routes[typ] = redactURL(q)
		}
	}
	if c.Route != nil {
		v.Route = "(func)"
	}
	if c.SecretAccessKey != "" {
		v.SecretAccessKey = backend.Redacted
	}
	if c.SessionToken != "" {
		v.SessionToken = backend.Redacted
	}
	if c.AWSConfig != nil {
		v.AWSConfig = "(caller's)"
	}
	if c.Client != nil {
		v.Client = "(caller's)"
	}
	return json.Marshal(v)
}

// MarshalJSON encodes the consumer's config like Config's: field names as json.Marshal would
// write them, the secret key and session token masked, the caller's client, AWS config and
// logger reduced to whether they are set.
func (c ConsumerConfig) MarshalJSON() ([]byte, error) {
	type shown struct {
		QueueURL          string        `json:"QueueURL,omitempty"`
		Region            string        `json:"Region,omitempty"`
		AccessKeyID       string        `json:"AccessKeyID,omitempty"`
		SecretAccessKey   string        `json:"SecretAccessKey,omitempty"`
		SessionToken      string        `json:"SessionToken,omitempty"`
		Endpoint          string        `json:"Endpoint,omitempty"`
		AWSConfig         string        `json:"AWSConfig,omitempty"`
		Client            string        `json:"Client,omitempty"`
		RawPayload        bool          `json:"RawPayload"`
		Concurrency       int           `json:"Concurrency,omitempty"`
		ReceiveBatch      int           `json:"ReceiveBatch,omitempty"`
		Pollers           int           `json:"Pollers,omitempty"`
		WaitTime          time.Duration `json:"WaitTime,omitempty"`
		VisibilityTimeout time.Duration `json:"VisibilityTimeout,omitempty"`
		ExtendInterval    time.Duration `json:"ExtendInterval,omitempty"`
		HandlerTimeout    time.Duration `json:"HandlerTimeout,omitempty"`
		Logger            string        `json:"Logger,omitempty"`
	}
	v := shown{
		QueueURL: redactURL(c.QueueURL), Region: c.Region, AccessKeyID: c.AccessKeyID,
		Endpoint: redactURL(c.Endpoint), RawPayload: c.RawPayload, Concurrency: c.Concurrency,
		ReceiveBatch: c.ReceiveBatch, Pollers: c.Pollers, WaitTime: c.WaitTime,
		VisibilityTimeout: c.VisibilityTimeout, ExtendInterval: c.ExtendInterval, HandlerTimeout: c.HandlerTimeout,
	}
	if c.SecretAccessKey != "" {
		v.SecretAccessKey = backend.Redacted
	}
	if c.SessionToken != "" {
		v.SessionToken = backend.Redacted
	}
	if c.AWSConfig != nil {
		v.AWSConfig = "(caller's)"
	}
	if c.Client != nil {
		v.Client = "(caller's)"
	}
	if c.Logger != nil {
		v.Logger = "(set)"
	}
	return json.Marshal(v)
}
