package sqs

import (
	"testing"

	"github.com/txoutbox/outbox"
)

func TestDestinationNamesTheQueue(t *testing.T) {
	tr := &Transport{router: newRouter(nil, Config{QueueURL: "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo", Routes: map[string]string{"REFUND": "refunds"}})}
	for typ, want := range map[string]string{"ORDER_PLACED": "orders.fifo", "REFUND": "refunds"} {
		if got := tr.Destination(&outbox.Message{Type: typ}); got != want {
			t.Errorf("Destination(%s) = %q, want %q", typ, got, want)
		}
	}
	if none := (&Transport{router: newRouter(nil, Config{})}).Destination(&outbox.Message{Type: "X"}); none != "" || tr.MessagingSystem() != "aws_sqs" {
		t.Errorf("no route: %q; system %q", none, tr.MessagingSystem())
	}
}
