package rabbitmq_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox/consume"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// consumerHarness gives each suite test its own queue, dead-lettering to a queue of its own,
// fed through the default exchange. The consumer connects through a proxy of its own, which
// Restart cuts: the consumer must dial again by itself.
func consumerHarness(b *broker, concurrency int) outboxtest.ConsumerFactory {
	return func(t *testing.T) outboxtest.ConsumerHarness {
		dlq := b.queue(t, nil)
		q := b.queue(t, amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
		p := newProxy(t, brokerHost(t))
		return outboxtest.ConsumerHarness{
			Transport: newTransport(t, rabbitmq.Config{RoutingKey: q, KeepKeyOrder: true}),
			NewConsumer: func(t *testing.T, h consume.Handler) outboxtest.ConsumerUnderTest {
				c, err := rabbitmq.NewConsumer(context.Background(), rabbitmq.ConsumerConfig{
					Connection:  rabbitmq.Connection{URL: rabbitmq.URL(p.url(t, brokerURL())), ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond},
					Queue:       q,
					Handler:     h,
					Concurrency: concurrency,
				})
				if err != nil {
					t.Fatal(err)
				}
				return c
			},
			SendMalformed: func(ctx context.Context) error {
				ch, err := b.admin.Channel()
				if err != nil {
					return err
				}
				defer ch.Close()
				return ch.PublishWithContext(ctx, "", q, false, false, amqp.Publishing{Body: []byte("not an envelope")})
			},
			Restart: func(context.Context) error {
				p.cut()
				return nil
			},
		}
	}
}

// Concurrent handlers finish in any order; one handler alone on its queue keeps the queue's
// order, a requeued message going back to its place.
func TestConsumerSuite(t *testing.T) {
	b := needBroker(t)
	t.Run("Concurrent", func(t *testing.T) {
		outboxtest.RunConsumerSuite(t, consumerHarness(b, 4), outboxtest.ConsumerFeatures{Malformed: true, Restart: true})
	})
	t.Run("Serial", func(t *testing.T) {
		outboxtest.RunConsumerSuite(t, consumerHarness(b, 1), outboxtest.ConsumerFeatures{Malformed: true, Restart: true, KeyOrder: true})
	})
}
