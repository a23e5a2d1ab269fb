package sqs

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/txoutbox/outbox"
)

// SQS limits this package checks before sending.
const (
	// DefaultMaxMessageBytes is the default bound on one message (body plus attributes): the
	// limit every SQS queue has accepted for years, so a message that fits is accepted by any
	// queue whatever its MaximumMessageSize attribute.
	DefaultMaxMessageBytes = 256 << 10
	// MaxMessageBytesLimit is the largest message SQS accepts at all (1 MiB).
	MaxMessageBytesLimit = 1 << 20
	// MaxBatchEntries is how many messages one SendMessageBatch call may carry.
	MaxBatchEntries = 10
	// MaxAttributes is how many message attributes one SQS message may carry.
	MaxAttributes = 10
	// DefaultConcurrency is how many SendMessageBatch calls are in flight by default.
	DefaultConcurrency = 8
	// DefaultGroupID is the FIFO MessageGroupId of messages without a Key.
	DefaultGroupID = "outbox"
)

// Config configures a Transport. Its Connection gives the credentials (see Connection). The zero
// value of every other field means its documented default.
type Config struct {
	// QueueURL is where messages go that no route claims: a queue URL
	// (https://sqs.eu-west-1.amazonaws.com/123456789012/orders) or a queue name (orders), which
	// is resolved once with GetQueueUrl and cached. A name or URL ending in .fifo is a FIFO queue.
	// Required unless Routes or Route is set; a message no route claims then fails permanently.
	QueueURL string
	// Routes sends messages of a Type to their own queue (URL or name, like QueueURL). It is
	// consulted before Route. Default none.
	Routes map[string]string
	// Route picks a queue (URL or name) for a message; "" means fall back to QueueURL. It is
	// called for messages whose Type is not in Routes, must be fast and safe for concurrent use,
	// and must not keep m. Default none.
	Route func(m *outbox.Message) string `json:"-"`

	// Connection says how to reach SQS: Region, AccessKeyID, SecretAccessKey, SessionToken and
	// Endpoint, or your own AWSConfig or Client.
	Connection

	// RawPayload sends the message Payload alone as the body, instead of the envelope
	// {"id","eventType","payload","result","timestamp"}. The ID and Type then travel as the
	// outbox.id and outbox.type attributes. Default false.
	RawPayload bool
	// DefaultGroupID is the MessageGroupId, on FIFO queues, of messages with an empty Key.
	// Default "outbox" (DefaultGroupID): unkeyed messages form one ordered group.
	DefaultGroupID string
	// MaxMessageBytes bounds one message as SQS counts it: body plus every attribute's name,
	// type and value. A larger message fails permanently without being sent. Default 256 KiB
	// (DefaultMaxMessageBytes); at most 1 MiB. Raise it only for queues whose
	// MaximumMessageSize allows it.
	MaxMessageBytes int
	// MaxBatchBytes bounds the sum of the sizes of one SendMessageBatch call's messages.
	// Default 256 KiB, or MaxMessageBytes when that is larger; at most 1 MiB.
	MaxBatchBytes int
	// Concurrency is how many SendMessageBatch calls this transport has in flight at most,
	// across all Publish calls. Default 8 (DefaultConcurrency); at most 256.
	Concurrency int
}

func (c Config) withDefaults() Config {
	if c.DefaultGroupID == "" {
		c.DefaultGroupID = DefaultGroupID
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = max(DefaultMaxMessageBytes, c.MaxMessageBytes)
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	return c
}

// queueName is what SQS accepts as a queue name: 1 to 80 characters, .fifo included.
var queueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,75}(\.fifo)?$|^[A-Za-z0-9_-]{1,80}$`)

// groupID is what SQS accepts as a MessageGroupId.
var groupID = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)

// Validate names the first missing or wrong field. Zero values are valid where they have a
// default. It never repeats a secret.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "sqs", Field: field, Problem: problem}
	}
	if c.QueueURL == "" && len(c.Routes) == 0 && c.Route == nil {
		return bad("QueueURL", "is empty (set QueueURL, Routes or Route)")
	}
	if c.QueueURL != "" {
		if err := checkQueue(c.QueueURL); err != nil {
			return bad("QueueURL", err.Error())
		}
	}
	for typ, q := range c.Routes {
		if typ == "" {
			return bad("Routes", "has an empty message type")
		}
		if err := checkQueue(q); err != nil {
			return bad(fmt.Sprintf("Routes[%q]", typ), err.Error())
		}
	}

	if err := c.validate(); err != nil { // the Connection's
		return err
	}

	switch {
	case c.DefaultGroupID != "" && !groupID.MatchString(c.DefaultGroupID):
		return bad("DefaultGroupID", "must be 1 to 128 printable ASCII characters without spaces")
	case c.MaxMessageBytes < 0:
		return bad("MaxMessageBytes", "is negative")
	case c.MaxMessageBytes > MaxMessageBytesLimit:
		return bad("MaxMessageBytes", fmt.Sprintf("%d is above the SQS limit of %d", c.MaxMessageBytes, MaxMessageBytesLimit))
	case c.MaxBatchBytes < 0:
		return bad("MaxBatchBytes", "is negative")
	case c.MaxBatchBytes > MaxMessageBytesLimit:
		return bad("MaxBatchBytes", fmt.Sprintf("%d is above the SQS limit of %d", c.MaxBatchBytes, MaxMessageBytesLimit))
	case c.Concurrency < 0:
		return bad("Concurrency", "is negative")
	case c.Concurrency > 256:
		return bad("Concurrency", fmt.Sprintf("%d is above 256", c.Concurrency))
	}
	if d := c.withDefaults(); d.MaxBatchBytes < d.MaxMessageBytes {
		return bad("MaxBatchBytes", fmt.Sprintf("%d is below MaxMessageBytes (%d): a message of the largest size would fit no batch", d.MaxBatchBytes, d.MaxMessageBytes))
	}
	return nil
}

// checkQueue accepts a queue URL or a queue name.
func checkQueue(q string) error {
	if !strings.Contains(q, "://") {
		if !queueName.MatchString(q) {
			return fmt.Errorf("%s is neither a queue URL nor a queue name (1-80 of A-Z a-z 0-9 _ -, optionally ending in .fifo)", quoteName(q))
		}
		return nil
	}
	if err := checkEndpoint(q); err != nil {
		return err
	}
	if u, _ := url.Parse(q); strings.Trim(u.Path, "/") == "" {
		return fmt.Errorf("%q has no queue path (want https://host/account/queue)", redactURL(q))
	}
	return nil
}

// checkEndpoint checks an http(s) URL with a host and no user information: an endpoint, or the
// base of a queue URL.
func checkEndpoint(e string) error {
	u, err := url.Parse(e)
	switch {
	case err != nil:
		return urlProblem(err)
	case u.User != nil:
		return errors.New("must not carry user information")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: scheme must be http or https", redactURL(e))
	case u.Host == "":
		return fmt.Errorf("%q has no host", redactURL(e))
	}
	return nil
}

// urlProblem reports why a URL did not parse without repeating the URL, which might hold a
// password.
func urlProblem(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("is not a valid URL: %v", err)
}
