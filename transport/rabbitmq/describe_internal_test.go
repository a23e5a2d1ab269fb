package rabbitmq

import (
	"testing"

	"github.com/txoutbox/outbox"
)

func TestDestinationNamesTheExchange(t *testing.T) {
	m := &outbox.Message{Type: "ORDER_PLACED"}
	if got := (&Transport{cfg: Config{Exchange: "events", RoutingKey: "{type}"}}).Destination(m); got != "events" {
		t.Errorf("Destination = %q, want events", got)
	}
	tr := &Transport{cfg: Config{RoutingKey: "orders"}}
	if got := tr.Destination(m); got != "amq.default" || tr.MessagingSystem() != "rabbitmq" {
		t.Errorf("default exchange: %q, system %q", got, tr.MessagingSystem())
	}
}
