package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox/consume"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/kafka"
)

// The rest of a partition after a failed handler: the suite checks that a redelivery comes no
// sooner.
const suiteRetryBackoff = 200 * time.Millisecond

// consumerHarness gives each suite test its own topic of three partitions and its own group.
func consumerHarness(c *cluster) outboxtest.ConsumerFactory {
	return func(t *testing.T) outboxtest.ConsumerHarness {
		topic := c.createTopic(t, 3, nil)
		group := topic + "-group"
		return outboxtest.ConsumerHarness{
			Transport: c.newTransport(t, kafka.Config{Topic: topic}),
			NewConsumer: func(t *testing.T, h consume.Handler) outboxtest.ConsumerUnderTest {
				cons, err := kafka.NewConsumer(context.Background(), kafka.ConsumerConfig{
					Connection: kafka.Connection{Brokers: c.brokers}, Topics: []string{topic}, Group: group,
					Handler: h, Concurrency: 3, RetryBackoff: suiteRetryBackoff, MaxRetryBackoff: 2 * suiteRetryBackoff,
					FetchMaxWait: 100 * time.Millisecond,
				})
				if err != nil {
					t.Fatal(err)
				}
				return cons
			},
			SendMalformed: func(context.Context) error {
				produceRaw(t, c, topic, &kgo.Record{Value: []byte("not an envelope")})
				return nil
			},
		}
	}
}

func TestConsumerSuite(t *testing.T) {
	c := needCluster(t)
	outboxtest.RunConsumerSuite(t, consumerHarness(c), outboxtest.ConsumerFeatures{
		KeyOrder: true, Malformed: true, MinRedeliveryDelay: suiteRetryBackoff,
	})
}
