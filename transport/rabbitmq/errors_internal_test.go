package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		name        string
		err         error
		unavailable bool
		text        string
	}{
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true, "rabbitmq: connect: dial tcp: connection refused"},
		{"closed", amqp.ErrClosed, true, "channel/connection is not open"},
		{"access refused", &amqp.Error{Code: amqp.AccessRefused, Reason: "ACCESS_REFUSED - Login was refused"}, true, "refused the credentials"},
		{"not allowed", &amqp.Error{Code: amqp.NotAllowed, Reason: "NOT_ALLOWED - vhost not found"}, true, "missing vhost"},
		{"forced", &amqp.Error{Code: amqp.ConnectionForced, Reason: "CONNECTION_FORCED - broker forced connection closure"}, true, "CONNECTION_FORCED"},
		{"lost", ErrConnectionLost, true, "connection to the broker lost"},
		{"blocked", fmt.Errorf("%w: low on memory", ErrBlocked), true, "blocked"},
		{"cancelled", context.Canceled, false, "rabbitmq: connect: context canceled"},
		{"deadline", fmt.Errorf("dial: %w", context.DeadlineExceeded), false, "deadline exceeded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := classify("connect", c.err)
			if outbox.IsUnavailable(err) != c.unavailable || outbox.IsPermanent(err) || !errors.Is(err, c.err) {
				t.Fatalf("classify(%v) = %v: unavailable %t, want %t", c.err, err, outbox.IsUnavailable(err), c.unavailable)
			}
			if !strings.Contains(err.Error(), c.text) || !strings.Contains(err.Error(), "rabbitmq: connect: ") {
				t.Fatalf("classify(%v) = %q, want it to name %q", c.err, err, c.text)
			}
		})
	}
}

func TestMaxSizeOf(t *testing.T) {
	cases := []struct {
		err  *amqp.Error
		want int
		ok   bool
	}{
		{&amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - message size 2097152 is larger than configured max size 1048576"}, 1048576, true},
		{&amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - inequivalent arg 'durable'"}, 0, false},
		{&amqp.Error{Code: amqp.NotFound, Reason: "larger than configured max size 5"}, 0, false},
		{nil, 0, false},
	}
	for _, c := range cases {
		if got, ok := maxSizeOf(c.err); got != c.want || ok != c.ok {
			t.Errorf("maxSizeOf(%v) = %d, %t; want %d, %t", c.err, got, ok, c.want, c.ok)
		}
	}
}

func TestRoutingKeyTemplate(t *testing.T) {
	m := &outbox.Message{Type: "ORDER_PLACED", Key: "o-1"}
	for tmpl, want := range map[string]string{
		"{type}": "ORDER_PLACED", "{key}": "o-1", "ev.{type}.{key}": "ev.ORDER_PLACED.o-1", "static": "static", "{type}{type}": "ORDER_PLACEDORDER_PLACED",
	} {
		if err := checkTemplate(tmpl); err != nil {
			t.Errorf("checkTemplate(%q) = %v", tmpl, err)
		}
		if got := expand(tmpl, m); got != want {
			t.Errorf("expand(%q) = %q, want %q", tmpl, got, want)
		}
	}
	for _, bad := range []string{"{tenant}", "a{", "}", "{type", "x}{key}"} {
		if err := checkTemplate(bad); err == nil {
			t.Errorf("checkTemplate(%q) accepted", bad)
		}
	}
}
