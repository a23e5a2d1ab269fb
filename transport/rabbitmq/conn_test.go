package rabbitmq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// A Transport and a Consumer given the service's own connection (Connection.Conn) publish and
// consume on it, and leave it open when they close; once the service closes it, Publish fails as
// an outage wrapping ErrConnectionLost instead of dialing.
func TestGivenConnection(t *testing.T) {
	b := needBroker(t)
	q := b.queue(t, nil)
	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	tr, err := rabbitmq.New(context.Background(), rabbitmq.Config{Connection: rabbitmq.Connection{Conn: conn}, RoutingKey: q})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	sent := prepared(t, messages(5, "ORDER_PLACED", "k")...)
	if err := tr.Publish(testCtx(t), sent); err != nil {
		t.Fatalf("publish on the given connection: %v", err)
	}
	got := newCollector()
	c := newConsumer(t, rabbitmq.ConsumerConfig{Connection: rabbitmq.Connection{Conn: conn}, Queue: q}, got.handle)
	startConsumer(t, c)
	waitFor(t, 15*time.Second, "5 acks", func() bool { return c.Stats().Acked == 5 })
	if err := c.Stop(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if conn.IsClosed() {
		t.Fatal("closing the Transport and the Consumer closed the service's connection")
	}
	if n := b.count(t, q); n != 0 {
		t.Fatalf("%d messages left in the queue", n)
	}

	again, err := rabbitmq.New(context.Background(), rabbitmq.Config{Connection: rabbitmq.Connection{Conn: conn}, RoutingKey: q})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := again.Publish(testCtx(t), prepared(t, messages(1, "T", "")...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	// The first publish may still find the session open (its channel's close not seen yet) and
	// fail on the closed channel; every one is an outage, and once the loss is seen the
	// transport does not dial: the error wraps ErrConnectionLost.
	waitFor(t, 5*time.Second, "a publish failing with ErrConnectionLost", func() bool {
		err := again.Publish(testCtx(t), prepared(t, messages(1, "T", "")...))
		if !outbox.IsUnavailable(err) {
			t.Fatalf("publish after the service closed its connection = %v, want an outage", err)
		}
		return errors.Is(err, rabbitmq.ErrConnectionLost)
	})
}

// Conn excludes URL and the TLS settings, which only a dial uses.
func TestGivenConnectionValidate(t *testing.T) {
	conn := &amqp.Connection{}
	for _, c := range []struct {
		conn  rabbitmq.Connection
		field string
	}{
		{rabbitmq.Connection{Conn: conn, URL: "amqp://h/"}, "URL"},
		{rabbitmq.Connection{Conn: conn, CAFile: "ca.pem"}, "TLS"},
		{rabbitmq.Connection{Conn: conn, KeyPassword: "x"}, "TLS"},
	} {
		err := rabbitmq.Config{Connection: c.conn}.Validate()
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("Validate(%v) = %v, want a config error on %s", c.conn, err, c.field)
		}
	}
	if err := (rabbitmq.Config{Connection: rabbitmq.Connection{Conn: conn}}).Validate(); err != nil {
		t.Fatalf("Conn alone: %v", err)
	}
}
