package nats_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
	"github.com/txoutbox/outbox/outboxtest"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// consumerHarness gives each suite test its own stream and durable consumer on the shared
// server. With keepKeyOrder the transport keeps each key's order, the consumer runs with
// KeepKeyOrder, and the durable holds one unacked message at a time, as KeepKeyOrder needs.
func consumerHarness(s *server, keepKeyOrder bool) outboxtest.ConsumerFactory {
	return func(t *testing.T) outboxtest.ConsumerHarness {
		st := s.createStream(t, nil)
		durable := st.durable(t, func(c *jetstream.ConsumerConfig) {
			if keepKeyOrder {
				c.MaxAckPending = 1
			}
		})
		return outboxtest.ConsumerHarness{
			Transport: newTransport(t, outboxnats.Config{Subject: st.subject(), KeepKeyOrder: keepKeyOrder}),
			NewConsumer: func(t *testing.T, h consume.Handler) outboxtest.ConsumerUnderTest {
				c, err := outboxnats.NewConsumer(context.Background(), outboxnats.ConsumerConfig{
					Connection:   outboxnats.Connection{URL: outboxnats.URL(serverURL())},
					Stream:       st.name,
					Durable:      durable,
					Handler:      h,
					Concurrency:  4,
					KeepKeyOrder: keepKeyOrder,
					FetchWait:    time.Second,
					Backoff:      outbox.Backoff{Initial: time.Second, Max: 2 * time.Second, Jitter: -1},
				})
				if err != nil {
					t.Fatal(err)
				}
				return c
			},
			SendMalformed: func(ctx context.Context) error {
				_, err := s.js.Publish(ctx, st.prefix+".GARBAGE", []byte("not an envelope"))
				return err
			},
		}
	}
}

// privateConsumerHarness gives each suite test a private nats-server of its own, storing on
// disk, which Restart kills (SIGKILL) and starts again: the consumer must reconnect by itself.
func privateConsumerHarness(t *testing.T) outboxtest.ConsumerHarness {
	p := startPrivate(t)
	s := dialServer(t, p.url, "private nats-server at "+p.url)
	st := s.createStream(t, func(c *jetstream.StreamConfig) { c.Storage = jetstream.FileStorage })
	durable := st.durable(t, nil)
	return outboxtest.ConsumerHarness{
		Transport: newTransport(t, outboxnats.Config{Connection: outboxnats.Connection{URL: outboxnats.URL(p.url), ReconnectWait: 20 * time.Millisecond}, Subject: st.subject(), AckTimeout: time.Second}),
		NewConsumer: func(t *testing.T, h consume.Handler) outboxtest.ConsumerUnderTest {
			c, err := outboxnats.NewConsumer(context.Background(), outboxnats.ConsumerConfig{
				Connection:  outboxnats.Connection{URL: outboxnats.URL(p.url), ReconnectWait: 20 * time.Millisecond},
				Stream:      st.name,
				Durable:     durable,
				Handler:     h,
				Concurrency: 4,
				FetchWait:   time.Second,
				AckTimeout:  time.Second,
				Backoff:     outbox.Backoff{Initial: time.Second, Max: 2 * time.Second, Jitter: -1},
			})
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		SendMalformed: func(ctx context.Context) error {
			_, err := s.js.Publish(ctx, st.prefix+".GARBAGE", []byte("not an envelope"))
			return err
		},
		Restart: func(context.Context) error {
			p.restart()
			return nil
		},
	}
}

// JetStream drops a second publish of a message ID (Nats-Msg-Id) within the stream's
// duplicate window.
func TestConsumerSuite(t *testing.T) {
	s := needServer(t)
	features := outboxtest.ConsumerFeatures{Malformed: true, DedupesPublishes: true, MinRedeliveryDelay: time.Second}
	t.Run("Concurrent", func(t *testing.T) { outboxtest.RunConsumerSuite(t, consumerHarness(s, false), features) })
	t.Run("KeepKeyOrder", func(t *testing.T) {
		f := features
		f.KeyOrder = true
		outboxtest.RunConsumerSuite(t, consumerHarness(s, true), f)
	})
	t.Run("PrivateServer", func(t *testing.T) {
		if testing.Short() {
			t.Skip("fault test: restarts private nats-servers (skipped with -short)")
		}
		f := features
		f.Restart = true
		outboxtest.RunConsumerSuite(t, privateConsumerHarness, f)
	})
}
