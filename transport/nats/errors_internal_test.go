package nats

import (
	"context"
	"errors"
	"fmt"
	"testing"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
)

// The classification table, for errors the tests against real servers cannot all provoke
// (a cluster without quorum, exhausted storage).
func TestClassify(t *testing.T) {
	api := func(code jetstream.ErrorCode, status int) error {
		return &jetstream.APIError{ErrorCode: code, Code: status, Description: "described"}
	}
	const (
		plain = iota
		permanent
		unavailable
	)
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"max payload", natsgo.ErrMaxPayload, permanent},
		{"bad subject", natsgo.ErrBadSubject, permanent},
		{"bad header", natsgo.ErrBadHeaderMsg, permanent},
		{"stream max_msg_size", api(jetstream.JSErrCodeStreamMessageExceedsMaximum, 400), permanent},
		{"no responders", jetstream.ErrNoStreamResponse, unavailable},
		{"no responders (core)", natsgo.ErrNoResponders, unavailable},
		{"ack timeout", jetstream.ErrAsyncPublishTimeout, unavailable},
		{"disconnected", natsgo.ErrDisconnected, unavailable},
		{"reconnecting", natsgo.ErrConnectionReconnecting, unavailable},
		{"reconnect buffer", natsgo.ErrReconnectBufExceeded, unavailable},
		{"closed", natsgo.ErrConnectionClosed, unavailable},
		{"permissions", natsgo.ErrPermissionViolation, unavailable},
		{"authorization", natsgo.ErrAuthorization, unavailable},
		{"jetstream off", api(jetstream.JSErrCodeJetStreamNotEnabled, 503), unavailable},
		{"jetstream off for account", api(jetstream.JSErrCodeJetStreamNotEnabledForAccount, 503), unavailable},
		{"stream not found", api(jetstream.JSErrCodeStreamNotFound, 404), unavailable},
		{"wrong stream", api(codeStreamNotMatch, 400), unavailable},
		{"insufficient resources", api(codeInsufficientResources, 503), unavailable},
		{"no quorum", api(codeClusterNotAvailable, 503), unavailable},
		{"storage exhausted", api(codeStorageExceeded, 500), unavailable},
		{"other 503", api(10999, 503), unavailable},
		{"stream limit (discard new)", api(10077, 400), plain},
		{"wrong last sequence", api(jetstream.JSErrCodeStreamWrongLastSequence, 400), plain},
		{"context", context.DeadlineExceeded, plain},
		{"unknown", errors.New("something else"), plain},
	}
	for _, c := range cases {
		got := classify("s.t", fmt.Errorf("wrapped: %w", c.err))
		switch {
		case c.want == permanent && !outbox.IsPermanent(got),
			c.want == unavailable && (!outbox.IsUnavailable(got) || outbox.IsPermanent(got)),
			c.want == plain && (outbox.IsUnavailable(got) || outbox.IsPermanent(got)):
			t.Errorf("%s: classify = %v (permanent %t, unavailable %t), want class %d", c.name, got, outbox.IsPermanent(got), outbox.IsUnavailable(got), c.want)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("%s: classify dropped the cause: %v", c.name, got)
		}
		if want := "nats: publish to s.t: "; len(got.Error()) < len(want) || got.Error()[:len(want)] != want {
			t.Errorf("%s: %q does not start with %q", c.name, got, want)
		}
	}
	if err := classify("s", jetstream.ErrJetStreamPublisherClosed); !errors.Is(err, outbox.ErrClosed) {
		t.Errorf("publisher closed = %v, want outbox.ErrClosed", err)
	}
}
