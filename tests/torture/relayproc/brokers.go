package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/nats"
	"github.com/txoutbox/outbox/transport/rabbitmq"
	"github.com/txoutbox/outbox/transport/sqs"
)

// brokerTransport builds the transport of cfg.Transport, unwrapped. release closes it.
func brokerTransport(ctx context.Context, cfg Config) (outbox.Transport, func(), error) {
	switch cfg.Transport {
	case "nats":
		return natsTransport(ctx, cfg)
	case "rabbitmq":
		tr, err := rabbitmq.New(ctx, rabbitmq.Config{
			// Back soon after a broker restart: the scenario restarts it several times.
			Connection:   rabbitmq.Connection{URL: rabbitmq.URL(cfg.RabbitMQURL), ReconnectMin: 50 * time.Millisecond, ReconnectMax: time.Second},
			RoutingKey:   cfg.RabbitMQQueue, // the default exchange: straight to the queue
			KeepKeyOrder: cfg.Ordered, MaxMessageBytes: cfg.MaxMessageBytes,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("relayproc: %w", err)
		}
		return tr, func() { _ = tr.Close() }, nil
	default:
		tr, err := sqs.New(ctx, sqs.Config{
			Connection: sqs.Connection{Endpoint: cfg.Endpoint, Region: "us-east-1", AccessKeyID: "torture", SecretAccessKey: "torture"},
			QueueURL:   cfg.QueueURL, MaxMessageBytes: cfg.MaxMessageBytes,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("relayproc: %w", err)
		}
		return tr, func() { _ = tr.Close() }, nil
	}
}

// natsTransport connects to NATS, retrying while the server does not answer (a relay started
// while the broker restarts), until ctx ends. Once connected, the transport reconnects by
// itself.
func natsTransport(ctx context.Context, cfg Config) (outbox.Transport, func(), error) {
	publishTimeout := cfg.PublishTimeout
	if publishTimeout == 0 {
		publishTimeout = cfg.Lease / 2 // the relay's default
	}
	ncfg := nats.Config{
		Connection: nats.Connection{URL: nats.URL(cfg.NATSURL), ConnectTimeout: time.Second, ReconnectWait: 100 * time.Millisecond},
		Subject:    cfg.NATSSubject, Stream: cfg.NATSStream,
		KeepKeyOrder: cfg.Ordered, MaxMessageBytes: cfg.MaxMessageBytes,
		// Below the relay's publish timeout, as the transport asks, so that a PubAck lost to a
		// restart fails the message instead of the whole publish.
		AckTimeout: publishTimeout * 2 / 3,
	}
	for {
		tr, err := nats.New(ctx, ncfg)
		if err == nil {
			return tr, func() { _ = tr.Close() }, nil
		}
		var cfgErr *outbox.ConfigError
		if errors.As(err, &cfgErr) {
			return nil, nil, fmt.Errorf("relayproc: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("relayproc: stopped before NATS answered: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
