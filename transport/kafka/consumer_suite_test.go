package kafka_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox/consume"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/kafka"
)

// The rest of a partition after a failed handler: the suite checks that a redelivery comes no
// sooner.
const suiteRetryBackoff = 200 * time.Millisecond

// consumerHarness gives each suite test its own topic of three partitions and its own group:
// on the shared cluster when c is set, else on a one-broker kfake cluster of its own that
// keeps its state on disk, so that Restart can close it and start it again on the same port.
func consumerHarness(shared *cluster) outboxtest.ConsumerFactory {
	return func(t *testing.T) outboxtest.ConsumerHarness {
		c, restart := shared, func(context.Context) error { return nil }
		if c == nil {
			c, restart = restartableCluster(t)
		}
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
			Restart: restart,
		}
	}
}

// restartableCluster starts a one-broker kfake cluster persisting to a directory of t's, closed
// at cleanup, and returns it with a restart that closes it and starts it again from that
// directory on the same port: the clients' connections break and the broker comes back with
// its topics, groups and offsets.
func restartableCluster(t *testing.T) (*cluster, func(context.Context) error) {
	dir := t.TempDir()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.DataDir(dir)}
	c, err := startCluster(nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	_, p, err := net.SplitHostPort(c.brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return c, func(ctx context.Context) error {
		c.fake.Close()
		fake, err := kfake.NewCluster(append(opts, kfake.Ports(port))...)
		if err != nil {
			return err
		}
		c.fake = fake
		_, err = c.admin.BrokerMetadata(ctx) // serving again
		return err
	}
}

// On kfake each case has a cluster of its own, which Restart restarts; on a real cluster
// (OUTBOX_TEST_KAFKA_BROKERS) the cases share it and Restart is skipped.
func TestConsumerSuite(t *testing.T) {
	c := needCluster(t)
	features := outboxtest.ConsumerFeatures{KeyOrder: true, Malformed: true, MinRedeliveryDelay: suiteRetryBackoff}
	if c.fake != nil {
		c, features.Restart = nil, true
	}
	outboxtest.RunConsumerSuite(t, consumerHarness(c), features)
}
