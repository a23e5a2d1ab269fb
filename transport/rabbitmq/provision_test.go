package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// provisioned deletes at cleanup the queues and exchanges Provision made for queue and exchange.
func provisioned(t *testing.T, b *broker, queue, exchange string) {
	t.Cleanup(func() {
		for _, q := range []string{queue, queue + rabbitmq.DeadSuffix} {
			if ch, err := b.admin.Channel(); err == nil {
				_, _ = ch.QueueDelete(q, false, false, false)
				_ = ch.Close()
			}
		}
		for _, x := range []string{exchange, queue + rabbitmq.DeadSuffix} {
			if ch, err := b.admin.Channel(); err == nil && x != "" {
				_ = ch.ExchangeDelete(x, false, false)
				_ = ch.Close()
			}
		}
	})
}

func TestProvisionPlan(t *testing.T) {
	p, err := rabbitmq.ProvisionConfig{
		Transport: rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqp://u:secret@host/prod"}, Exchange: "events", RoutingKey: "orders.{type}"},
		Queue:     "orders",
	}.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Exchanges) != 2 || p.Exchanges[1].Name != "events" || p.Exchanges[1].Type != "topic" || p.Exchanges[0].Name != "orders.dead" {
		t.Errorf("exchanges %+v", p.Exchanges)
	}
	q := p.Queues[1]
	if q.Name != "orders" || q.VHost != "prod" || q.Arguments["x-queue-type"] != "quorum" || q.Arguments["x-delivery-limit"] != rabbitmq.DefaultDeliveryLimit || q.Arguments["x-dead-letter-exchange"] != "orders.dead" {
		t.Errorf("queue %+v", q)
	}
	if b := p.Bindings[1]; b.Source != "events" || b.Destination != "orders" || b.RoutingKey != "orders.#" {
		t.Errorf("binding %+v", b)
	}
	if _, err := (rabbitmq.ProvisionConfig{Transport: rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqp://h/"}}}).Plan(); err == nil || !strings.Contains(err.Error(), "Queue") {
		t.Errorf("no queue: %v", err)
	}
}

// Provision declares the exchange, the quorum queue and its dead-letter exchange and queue, finds
// them the second time; a relay then publishes through the transport to a Consumer of the queue,
// and a message the handler keeps failing reaches the dead-letter queue after the delivery limit.
func TestProvisionThenRelayAndConsume(t *testing.T) {
	b := needBroker(t)
	queue, exchange := name(t, "q"), name(t, "x")
	provisioned(t, b, queue, exchange)
	tcfg := rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(b.url)}, Exchange: exchange, RoutingKey: "orders.{type}"}
	pc := rabbitmq.ProvisionConfig{Transport: tcfg, Queue: queue, DeliveryLimit: 2}

	rep, err := rabbitmq.Provision(testCtx(t), pc)
	if err != nil {
		t.Fatal(err)
	}
	want := "created exchange,created exchange,created queue,created queue,bound binding,bound binding"
	if got := actions(rep); got != want {
		t.Fatalf("first run: %s; report %v", got, rep.Objects)
	}
	rep, err = rabbitmq.Provision(testCtx(t), pc)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got != strings.ReplaceAll(want, "created", "exists") {
		t.Fatalf("second run: %s; report %v", got, rep.Objects)
	}
	if line := rep.Objects[3].String(); line != "exists: queue "+queue+" (quorum, durable, delivery limit 2, dead letters to "+queue+".dead)" {
		t.Errorf("line %q", line)
	}

	store := memstore.New()
	msgs := []*outbox.Message{
		{Type: "created", Key: "k", Payload: []byte(`{"n":1}`)},
		{Type: "poison", Key: "p", Payload: []byte(`{"n":2}`)},
		{Type: "created", Key: "k", Payload: []byte(`{"n":3}`)},
	}
	if err := store.Add(testCtx(t), msgs...); err != nil {
		t.Fatal(err)
	}
	runRelay(t, store, newTransport(t, tcfg), outbox.Config{})
	got := newCollector()
	c := newConsumer(t, rabbitmq.ConsumerConfig{Queue: queue}, func(ctx context.Context, m *outbox.Message) error {
		if m.Type == "poison" {
			return errors.New("cannot handle it")
		}
		return got.handle(ctx, m)
	})
	startConsumer(t, c)
	waitFor(t, 20*time.Second, "the consumer to receive the good messages", func() bool { return got.len() == 2 })
	d := deadLettered(t, b, queue+rabbitmq.DeadSuffix)
	if d.MessageId != msgs[1].ID {
		t.Errorf("dead-lettered %q, want the poison message %s", d.MessageId, msgs[1].ID)
	}
}

// A queue that exists with other settings is reported and left as it is.
func TestProvisionConflict(t *testing.T) {
	b := needBroker(t)
	queue := b.queue(t, amqp.Table{"x-queue-type": "classic"})
	provisioned(t, b, queue, "")
	pc := rabbitmq.ProvisionConfig{Transport: rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(b.url)}}, Queue: queue}
	rep, err := rabbitmq.Provision(testCtx(t), pc)
	if !errors.Is(err, rabbitmq.ErrConflict) || !strings.Contains(err.Error(), "queue "+queue+": ") {
		t.Fatalf("err %v, want a conflict on the queue", err)
	}
	if got := actions(rep); got != "created exchange,created queue,conflict queue" {
		t.Errorf("report %v", rep.Objects)
	}
	// Unchanged: a classic queue still, declared with its own arguments.
	if _, err := b.channel(t).QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "classic"}); err != nil {
		t.Errorf("the queue changed: %v", err)
	}
}

func actions(rep rabbitmq.ProvisionReport) string {
	var s []string
	for _, o := range rep.Objects {
		s = append(s, o.Action+" "+o.Kind)
	}
	return strings.Join(s, ",")
}

// Provision declares the exchange the transport publishes to, the queue a Consumer reads and
// its dead letters: a deployment's set-up step, safe to run at every start.
func ExampleProvision() {
	cfg := rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqp://guest:guest@127.0.0.1:5672/"}, Exchange: "events"}
	rep, err := rabbitmq.Provision(context.Background(), rabbitmq.ProvisionConfig{Transport: cfg, Queue: "billing"})
	if err != nil {
		log.Fatal(err) // errors.Is(err, rabbitmq.ErrConflict): an object exists with other settings
	}
	for _, o := range rep.Objects {
		fmt.Println(o) // created queue billing (quorum, durable, delivery limit 5, dead letters to billing.dead)
	}
}
