package kafka_test

import (
	"context"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/kafka"
)

// harness gives each suite test its own topic of three partitions, deleted at cleanup.
func harness(c *cluster) outboxtest.TransportFactory {
	return func(t *testing.T) outboxtest.TransportHarness {
		topic := c.createTopic(t, 3, nil)
		tr := c.newTransport(t, kafka.Config{Topic: topic})
		return outboxtest.TransportHarness{
			Transport: tr,
			Receive: func(ctx context.Context, n int) ([]*outbox.Message, error) {
				got, err := c.consume(ctx, n, false, topic)
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
	c := needCluster(t)
	outboxtest.RunTransportSuite(t, harness(c), outboxtest.TransportFeatures{
		Headers:         true,
		Keys:            true,
		Ordered:         true,
		MaxMessageBytes: kafka.DefaultMaxMessageBytes,
	})
}
