package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
)

// authErrors are the broker's refusals of who the producer is or what it may do. They are the
// relay's configuration, not any message's fault: marking them permanent would dead-letter the
// whole outbox over one expired password, so they are outages, which pause the relay.
var authErrors = []error{
	kerr.TopicAuthorizationFailed,
	kerr.ClusterAuthorizationFailed,
	kerr.TransactionalIDAuthorizationFailed,
	kerr.SaslAuthenticationFailed,
	kerr.UnsupportedSaslMechanism,
	kerr.IllegalSaslState,
}

// configErrors are refusals of how the transport is set up that no message causes and no
// message can fix; like refused credentials, they pause the relay rather than kill messages.
var configErrors = []error{
	kerr.UnsupportedCompressionType,
	kerr.UnsupportedVersion,
	kerr.InvalidRequiredAcks,
}

// classify turns the producer's error for one record into what Publish reports, saying where
// it happened and marking what no retry can fix (outbox.Permanent) and what is an outage of the
// brokers (outbox.Unavailable). alone says whether the record was the only one of its partition
// in its wave, and so alone in its batch: a refusal of the whole batch then concerns it alone.
func classify(c Config, topic string, partition int32, alone bool, err error) error {
	where := fmt.Sprintf("kafka: publish to %s[%d]", topic, partition)
	if errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID) {
		where = "kafka: publish to " + topic // no partition was chosen
	}
	wrap := func(format string, args ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{where}, args...)...)
	}
	switch {
	case errors.Is(err, kgo.ErrClientClosed):
		return wrap("%w", outbox.ErrClosed)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return wrap("%w", err)

	case errors.Is(err, kerr.InvalidTopicException):
		return outbox.Permanent(wrap("the broker refuses the topic name: %w", err))
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		if alone {
			return outbox.Permanent(wrap("the record is too large for the topic (its max.message.bytes is below the record's size): %w", err))
		}
		return wrap("the broker refused a batch of records as too large for the topic: set MaxMessageBytes (%d) at or below the topic's max.message.bytes: %w", c.MaxMessageBytes, err)
	case errors.Is(err, kerr.InvalidRecord), errors.Is(err, kerr.PolicyViolation):
		if alone {
			return outbox.Permanent(wrap("the broker refuses the record: %w", err))
		}
		return wrap("the broker refused the batch this record was in (it does not say which record is at fault): %w", err)
	}

	for _, e := range authErrors {
		if errors.Is(err, e) {
			return outbox.Unavailable(wrap("the broker refused the credentials or their permissions (check SASL and the topic's ACLs): %w", err))
		}
	}
	for _, e := range configErrors {
		if errors.Is(err, e) {
			return outbox.Unavailable(wrap("the broker refuses the producer's settings: %w", err))
		}
	}
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		// Also when the producer gave up waiting for the topic (a record timeout whose last
		// error was this).
		return outbox.Unavailable(wrap("the topic does not exist (create it, or enable auto-creation on the brokers): %w", err))
	case errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries):
		return outbox.Unavailable(wrap("not delivered within DeliveryTimeout (%v): the brokers are unreachable or cannot take writes: %w", c.DeliveryTimeout, err))
	case kerr.IsRetriable(err), isNetworkError(err):
		// Leader elections, too few in-sync replicas, timeouts, throttling, connections lost.
		return outbox.Unavailable(wrap("%w", err))
	}
	return wrap("%w", err)
}

// isNetworkError reports whether err is a failure to reach or keep talking to a broker.
func isNetworkError(err error) bool {
	var ne net.Error
	var op *net.OpError
	return errors.As(err, &ne) || errors.As(err, &op) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
