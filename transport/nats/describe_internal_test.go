package nats

import (
	"testing"

	"github.com/txoutbox/outbox"
)

func TestDestinationNamesTheSubject(t *testing.T) {
	tr := &Transport{router: newRouter(Config{Subject: "outbox.{type}", Routes: map[string]string{"REFUND": "refunds.issued"}})}
	for typ, want := range map[string]string{"ORDER_PLACED": "outbox.ORDER_PLACED", "REFUND": "refunds.issued", "bad type": ""} {
		if got := tr.Destination(&outbox.Message{Type: typ}); got != want {
			t.Errorf("Destination(%s) = %q, want %q", typ, got, want)
		}
	}
	if tr.MessagingSystem() != "nats" {
		t.Errorf("system %q", tr.MessagingSystem())
	}
}
