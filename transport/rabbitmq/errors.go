package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
)

var (
	// ErrConnectionLost matches (with errors.Is) the failure of a message whose confirm never
	// came because the channel or connection closed first. The broker may or may not have taken
	// the message; it is reported failed, never published.
	ErrConnectionLost = errors.New("connection to the broker lost")
	// ErrBlocked matches the failure of a message not sent, or not confirmed, while the broker
	// blocks publishing connections (connection.blocked: a memory or disk alarm).
	ErrBlocked = errors.New("the broker blocked the connection")
)

// classify wraps a failed operation's error with what was being done. Everything that concerns
// the broker rather than a message — unreachable, refused or closed connections, rejected
// credentials, a missing vhost or exchange, a blocked connection, a timed-out handshake — is an
// outage (outbox.Unavailable): the relay pauses instead of charging attempts. A cancelled context
// stays as it is.
func classify(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("rabbitmq: %s: %w", op, err)
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case amqp.AccessRefused:
			return outbox.Unavailable(fmt.Errorf("rabbitmq: %s: the broker refused the credentials or their permissions (check the user, password, vhost and its permissions): %w", op, err))
		case amqp.NotAllowed:
			return outbox.Unavailable(fmt.Errorf("rabbitmq: %s: the broker does not allow the connection (missing vhost or connection limit): %w", op, err))
		}
		return outbox.Unavailable(fmt.Errorf("rabbitmq: %s: %w", op, err))
	}
	// Anything else while talking to the broker (refused, reset or closed connections, a
	// timed-out handshake, a TLS failure, a frame the library could not parse) is the
	// destination's problem, not a message's.
	return outbox.Unavailable(fmt.Errorf("rabbitmq: %s: %w", op, err))
}

// maxSizeText is how RabbitMQ explains closing a channel over a message above max_message_size:
// PRECONDITION_FAILED - message size 2097152 is larger than configured max size 1048576.
var maxSizeText = regexp.MustCompile(`larger than configured max size (\d+)`)

// maxSizeOf returns the broker's max_message_size from the error it closed a channel with, if
// that is why.
func maxSizeOf(e *amqp.Error) (int, bool) {
	if e == nil || e.Code != amqp.PreconditionFailed {
		return 0, false
	}
	m := maxSizeText.FindStringSubmatch(e.Reason)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}
