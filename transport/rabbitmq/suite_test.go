package rabbitmq_test

import (
	"context"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// suiteMaxBytes keeps the suite's oversized message small; the broker's own limit is tested
// against a private node (see restart_test.go).
const suiteMaxBytes = 256 << 10

// harness gives each suite test its own queue, deleted at cleanup, fed through the default
// exchange.
func harness(b *broker, keyOrder bool) outboxtest.TransportFactory {
	return func(t *testing.T) outboxtest.TransportHarness {
		q := b.queue(t, nil)
		tr := newTransport(t, rabbitmq.Config{RoutingKey: q, MaxMessageBytes: suiteMaxBytes, KeepKeyOrder: keyOrder})
		return outboxtest.TransportHarness{
			Transport: tr,
			Receive: func(ctx context.Context, n int) ([]*outbox.Message, error) {
				got, err := b.receive(ctx, q, n, false)
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
	b := needBroker(t)
	for _, keyOrder := range []bool{false, true} {
		name := "AllAtOnce"
		if keyOrder {
			name = "KeepKeyOrder"
		}
		t.Run(name, func(t *testing.T) {
			outboxtest.RunTransportSuite(t, harness(b, keyOrder), outboxtest.TransportFeatures{
				Headers:         true,
				Keys:            true,
				Ordered:         true, // one channel into one queue keeps publish order
				MaxMessageBytes: suiteMaxBytes,
			})
		})
	}
}
