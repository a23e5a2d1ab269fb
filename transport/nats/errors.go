package nats

import (
	"context"
	"errors"
	"fmt"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
)

// JetStream error codes the transport classifies (nats-server's errors.json) that nats.go has
// no constant for.
const (
	// codeInsufficientResources: the server has no storage or memory left for the stream.
	codeInsufficientResources jetstream.ErrorCode = 10023
	// codeStreamNotMatch: Nats-Expected-Stream names another stream than the one that captures
	// the subject.
	codeStreamNotMatch jetstream.ErrorCode = 10060
	// codeClusterNotAvailable: the JetStream cluster has no quorum ("temporarily unavailable").
	codeClusterNotAvailable jetstream.ErrorCode = 10008
	// codeClusterNoPeers: no server of the cluster can take the stream.
	codeClusterNoPeers jetstream.ErrorCode = 10005
	// codeMemoryExceeded and codeStorageExceeded: the server's JetStream limits are reached.
	codeMemoryExceeded  jetstream.ErrorCode = 10028
	codeStorageExceeded jetstream.ErrorCode = 10047
)

// unavailableCodes are JetStream errors of the destination, not of a message: the relay pauses
// on them instead of charging attempts.
var unavailableCodes = map[jetstream.ErrorCode]string{
	jetstream.JSErrCodeJetStreamNotEnabled:           "JetStream is not enabled on the server",
	jetstream.JSErrCodeJetStreamNotEnabledForAccount: "JetStream is not enabled for the account",
	jetstream.JSErrCodeStreamNotFound:                "the stream does not exist",
	codeStreamNotMatch:                               "the subject is captured by another stream than Stream (check Stream and the stream's subjects)",
	codeInsufficientResources:                        "the server has no resources left for the stream",
	codeClusterNotAvailable:                          "the JetStream cluster is not available",
	codeClusterNoPeers:                               "the JetStream cluster has no peers for the stream",
	codeMemoryExceeded:                               "the server's JetStream memory is exhausted",
	codeStorageExceeded:                              "the server's JetStream storage is exhausted",
}

// classify turns the failure of one message's publish into its error, marked with what the
// relay should do:
//
//   - outbox.Permanent when no retry can fix it: the message exceeds the server's max_payload or
//     the stream's max_msg_size.
//   - outbox.Unavailable when the destination is out: no stream listens on the subject (no
//     responders), JetStream is disabled or short of resources, the connection is down,
//     closed or reconnecting, the PubAck timed out, credentials or permissions were refused.
//     A stream that is missing is treated as an outage rather than a fault of the message: it
//     is a deployment step not yet taken (or undone), fixed without touching the messages.
//   - unmarked otherwise (a stream limit such as max_msgs with discard new): an ordinary
//     failed attempt.
//
// A timed-out or disconnected publish may have been stored: the relay publishes it again and
// the stream's duplicate window drops the copy.
func classify(subject string, err error) error {
	wrap := func(what string) error {
		if what == "" {
			return fmt.Errorf("nats: publish to %s: %w", subject, err)
		}
		return fmt.Errorf("nats: publish to %s: %s: %w", subject, what, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return wrap("")
	}
	if errors.Is(err, jetstream.ErrJetStreamPublisherClosed) {
		return fmt.Errorf("nats: publish to %s: %w", subject, outbox.ErrClosed)
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		if api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
			return outbox.Permanent(wrap("the message exceeds the stream's max_msg_size"))
		}
		if what, ok := unavailableCodes[api.ErrorCode]; ok {
			return outbox.Unavailable(wrap(what))
		}
		if api.Code == 503 {
			return outbox.Unavailable(wrap("JetStream is unavailable"))
		}
		return wrap("")
	}
	switch {
	case errors.Is(err, natsgo.ErrMaxPayload):
		return outbox.Permanent(wrap("the message exceeds the server's max_payload"))
	case errors.Is(err, natsgo.ErrBadSubject), errors.Is(err, jetstream.ErrInvalidSubject):
		return outbox.Permanent(wrap("the subject is invalid"))
	case errors.Is(err, natsgo.ErrBadHeaderMsg):
		return outbox.Permanent(wrap("a header is invalid"))
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, natsgo.ErrNoResponders):
		return outbox.Unavailable(wrap("no stream captures the subject, or JetStream is not running"))
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, natsgo.ErrTimeout):
		return outbox.Unavailable(wrap("no PubAck within AckTimeout (the stream may have stored it)"))
	case errors.Is(err, natsgo.ErrDisconnected), errors.Is(err, natsgo.ErrConnectionReconnecting),
		errors.Is(err, natsgo.ErrReconnectBufExceeded), errors.Is(err, natsgo.ErrConnectionClosed),
		errors.Is(err, natsgo.ErrNoServers), errors.Is(err, natsgo.ErrStaleConnection),
		errors.Is(err, natsgo.ErrConnectionDraining), errors.Is(err, jetstream.ErrConnectionClosed):
		return outbox.Unavailable(wrap("the connection is down"))
	case errors.Is(err, natsgo.ErrAuthorization), errors.Is(err, natsgo.ErrAuthExpired),
		errors.Is(err, natsgo.ErrAuthRevoked), errors.Is(err, natsgo.ErrAccountAuthExpired),
		errors.Is(err, natsgo.ErrPermissionViolation):
		return outbox.Unavailable(wrap("the server refused the credentials or their permissions"))
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return outbox.Unavailable(wrap("too many PubAcks outstanding"))
	}
	return wrap("")
}
