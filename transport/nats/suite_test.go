package nats_test

import (
	"context"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// harness gives each suite test its own stream, deleted at cleanup.
func harness(s *server, keepKeyOrder bool) outboxtest.TransportFactory {
	return func(t *testing.T) outboxtest.TransportHarness {
		st := s.createStream(t, nil)
		tr := newTransport(t, outboxnats.Config{Subject: st.subject(), KeepKeyOrder: keepKeyOrder})
		r := st.reader(t, false)
		return outboxtest.TransportHarness{
			Transport: tr,
			Receive: func(ctx context.Context, n int) ([]*outbox.Message, error) {
				got, err := r.next(ctx, n)
				msgs := make([]*outbox.Message, len(got))
				for i, g := range got {
					msgs[i] = g.Msg
				}
				return msgs, err
			},
		}
	}
}

func TestTransportSuite(t *testing.T) {
	s := needServer(t)
	features := outboxtest.TransportFeatures{
		Headers:         true,
		Keys:            true,
		Ordered:         true,
		MaxMessageBytes: int(s.nc.MaxPayload()),
	}
	t.Run("Pipelined", func(t *testing.T) { outboxtest.RunTransportSuite(t, harness(s, false), features) })
	t.Run("KeepKeyOrder", func(t *testing.T) { outboxtest.RunTransportSuite(t, harness(s, true), features) })
}
