package kafka

import (
	"testing"

	"github.com/txoutbox/outbox"
)

func TestDestinationNamesTheTopic(t *testing.T) {
	tr := &Transport{router: newRouter(Config{Topic: "events", Routes: map[string]string{"REFUND": "refunds"}})}
	for typ, want := range map[string]string{"ORDER_PLACED": "events", "REFUND": "refunds"} {
		if got := tr.Destination(&outbox.Message{Type: typ}); got != want {
			t.Errorf("Destination(%s) = %q, want %q", typ, got, want)
		}
	}
	if none := (&Transport{router: newRouter(Config{})}).Destination(&outbox.Message{Type: "X"}); none != "" || tr.MessagingSystem() != "kafka" {
		t.Errorf("no route: %q; system %q", none, tr.MessagingSystem())
	}
}
