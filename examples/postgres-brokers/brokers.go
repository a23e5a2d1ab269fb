package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/kafka"
	"github.com/txoutbox/outbox/transport/nats"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// broker is one transport with the consumer that reads back what it publishes.
type broker struct {
	transport outbox.Transport
	consumer  interface {
		Start(ctx context.Context) error
		Stop(ctx context.Context) error
	}
	where string // the destination, for the output
	close func()
}

// handler is what the consumer does with each event.
type handler = func(ctx context.Context, m *outbox.Message) error

// openBroker prepares the destination the example publishes to (in a deployment, that is the
// broker's configuration, not the service's), the transport and a consumer of that destination.
func openBroker(ctx context.Context, cfg config, handle handler) (*broker, error) {
	switch cfg.Transport {
	case "kafka":
		return openKafka(ctx, cfg, handle)
	case "nats":
		return openNATS(ctx, cfg, handle)
	default:
		return openRabbitMQ(cfg, handle)
	}
}

// openKafka publishes to a topic of 3 partitions: each user's events share a record key (the
// event's Key), hence a partition, hence an order.
func openKafka(ctx context.Context, cfg config, handle handler) (*broker, error) {
	b := &broker{where: "Kafka topic " + cfg.KafkaTopic, close: func() {}}
	brokers := cfg.KafkaBrokers
	if cfg.KafkaFake {
		fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, cfg.KafkaTopic))
		if err != nil {
			return nil, fmt.Errorf("kfake: %w", err)
		}
		brokers, b.close = fake.ListenAddrs(), fake.Close
		b.where += " (in-process kfake cluster)"
	}
	tr, err := kafka.New(ctx, kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: cfg.KafkaTopic})
	if err != nil {
		b.close()
		return nil, err
	}
	c, err := kafka.NewConsumer(ctx, kafka.ConsumerConfig{Connection: kafka.Connection{Brokers: brokers}, Topics: []string{cfg.KafkaTopic}, Group: cfg.KafkaTopic + "-example", Handler: handle})
	if err != nil {
		_ = tr.Close()
		b.close()
		return nil, err
	}
	closeCluster := b.close
	b.transport, b.consumer = tr, c
	b.close = func() { _ = tr.Close(); closeCluster() }
	return b, nil
}

// openNATS publishes to subjects <stream>.<type>, which the stream captures; the relay's
// messages carry Nats-Msg-Id = ID, so the stream drops a republished one within its duplicate
// window. The consumer is a durable pull consumer of the stream.
func openNATS(ctx context.Context, cfg config, handle handler) (*broker, error) {
	prefix := strings.ToLower(cfg.NATSStream)
	tr, err := nats.New(ctx, nats.Config{Connection: nats.Connection{URL: nats.URL(cfg.NATSURL)}, Subject: prefix + ".{type}", Stream: cfg.NATSStream})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*broker, error) {
		_ = tr.Close()
		return nil, err
	}
	js, err := jetstream.New(tr.Conn())
	if err != nil {
		return fail(fmt.Errorf("jetstream: %w", err))
	}
	stream, err := js.Stream(ctx, cfg.NATSStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		stream, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name: cfg.NATSStream, Subjects: []string{prefix + ".>"}, Storage: jetstream.FileStorage,
			Duplicates: 2 * time.Minute, // the default, made visible: see below
		})
	}
	if err != nil {
		return fail(fmt.Errorf("stream %s: %w", cfg.NATSStream, err))
	}
	// The duplicate window drops a republish only if it comes within the window: 2 minutes
	// cover a relay that died (replaced after its 30 s lease) and short outages. A deployment
	// that must drop every copy sizes it to its retry horizon (transport/nats's README) and
	// checks it here.
	if err := tr.CheckStream(ctx, outbox.DefaultLease); err != nil {
		return fail(err)
	}
	durable := prefix + "-example"
	if _, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: durable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: 5,
	}); err != nil {
		return fail(fmt.Errorf("consumer %s: %w", durable, err))
	}
	c, err := nats.NewConsumer(ctx, nats.ConsumerConfig{Connection: nats.Connection{URL: nats.URL(cfg.NATSURL)}, Stream: cfg.NATSStream, Durable: durable, Handler: handle})
	if err != nil {
		return fail(err)
	}
	return &broker{transport: tr, consumer: c, where: "NATS stream " + cfg.NATSStream, close: func() { _ = tr.Close() }}, nil
}

// openRabbitMQ publishes through the default exchange, whose routing key is the queue's name,
// with publisher confirms: an event is acknowledged in the outbox only once the broker has it.
func openRabbitMQ(cfg config, handle handler) (*broker, error) {
	if err := declareQueue(cfg.RabbitMQURL, cfg.RabbitMQQueue); err != nil {
		return nil, err
	}
	tr, err := rabbitmq.New(context.Background(), rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(cfg.RabbitMQURL)}, RoutingKey: cfg.RabbitMQQueue})
	if err != nil {
		return nil, err
	}
	c, err := rabbitmq.NewConsumer(context.Background(), rabbitmq.ConsumerConfig{Connection: rabbitmq.Connection{URL: rabbitmq.URL(cfg.RabbitMQURL)}, Queue: cfg.RabbitMQQueue, Handler: handle})
	if err != nil {
		_ = tr.Close()
		return nil, err
	}
	return &broker{transport: tr, consumer: c, where: "RabbitMQ queue " + cfg.RabbitMQQueue, close: func() { _ = tr.Close() }}, nil
}

// declareQueue makes sure the durable queue exists; the transport and the consumer never
// declare anything.
func declareQueue(url, queue string) error {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		// The driver's error never holds the URL; say where without its password.
		return fmt.Errorf("rabbitmq: connect to %s: %w", rabbitmq.RedactURL(url), err)
	}
	// Declared or not, the queue is what it is once QueueDeclare returns: closing cannot change it.
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq: channel: %w", err)
	}
	defer func() { _ = ch.Close() }()
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("rabbitmq: declare queue %s: %w", queue, err)
	}
	return nil
}
