package sqs_test

import (
	"context"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/sqs"
)

// harness gives each suite test its own queue, deleted at cleanup.
func harness(s *server, fifo bool) outboxtest.TransportFactory {
	return func(t *testing.T) outboxtest.TransportHarness {
		url := s.createQueue(t, fifo)
		tr := newTransport(t, sqs.Config{QueueURL: url})
		return outboxtest.TransportHarness{
			Transport: tr,
			Receive: func(ctx context.Context, n int) ([]*outbox.Message, error) {
				got, err := s.receive(ctx, url, n, false)
				msgs := make([]*outbox.Message, len(got))
				for i, r := range got {
					msgs[i] = r.Msg
				}
				return msgs, err
			},
		}
	}
}

func TestTransportSuite(t *testing.T) {
	s := needServer(t)
	t.Run("Standard", func(t *testing.T) {
		outboxtest.RunTransportSuite(t, harness(s, false), outboxtest.TransportFeatures{
			Headers:         true,
			Keys:            true,
			MaxMessageBytes: sqs.DefaultMaxMessageBytes,
		})
	})
	t.Run("FIFO", func(t *testing.T) {
		outboxtest.RunTransportSuite(t, harness(s, true), outboxtest.TransportFeatures{
			Headers:         true,
			Keys:            true,
			Ordered:         true,
			MaxMessageBytes: sqs.DefaultMaxMessageBytes,
		})
	})
}
