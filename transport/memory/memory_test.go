package memory_test

import (
	"context"
	"errors"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/memory"
)

func TestTransportSuite(t *testing.T) {
	outboxtest.RunTransportSuite(t, func(t *testing.T) outboxtest.TransportHarness {
		tr := memory.New()
		received := 0
		return outboxtest.TransportHarness{
			Transport: tr,
			Receive: func(ctx context.Context, n int) ([]*outbox.Message, error) {
				err := tr.WaitFor(ctx, received+n)
				got := tr.Received()[received:]
				received += len(got)
				return got, err
			},
		}
	}, outboxtest.TransportFeatures{Headers: true, Keys: true, Ordered: true})
}

func TestInjectedFailures(t *testing.T) {
	ctx := context.Background()
	tr := memory.New()
	msgs := outboxtest.NewMessages(3, "T", "")
	if err := backend.Prepare(ctx, msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}

	tr.FailNext(2, nil)
	for range 2 {
		if err := tr.Publish(ctx, msgs); !errors.Is(err, memory.ErrInjected) {
			t.Fatalf("FailNext: %v", err)
		}
	}
	if err := tr.Publish(ctx, msgs[:1]); err != nil || tr.Len() != 1 {
		t.Fatalf("after FailNext ran out: %v, %d received", err, tr.Len())
	}

	tr.FailIDs(outbox.Permanent(errors.New("poison")), msgs[1].ID)
	err := tr.Publish(ctx, msgs[1:])
	var be *outbox.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !outbox.IsPermanent(be.Failed[msgs[1].ID]) || tr.Len() != 2 {
		t.Fatalf("FailIDs: %v, %d received", err, tr.Len())
	}

	tr.FailAll(nil)
	if err := tr.Publish(ctx, msgs); !errors.Is(err, memory.ErrInjected) {
		t.Fatalf("FailAll: %v", err)
	}
	tr.Heal()
	tr.Reset()
	if err := tr.Publish(ctx, msgs); err != nil || tr.Len() != 3 {
		t.Fatalf("after Heal: %v, %d received", err, tr.Len())
	}
}

func TestSubscribers(t *testing.T) {
	ctx := context.Background()
	tr := memory.New()
	var got []string
	unsubscribe := tr.Subscribe(func(ctx context.Context, m *outbox.Message) error {
		if m.Type == "REJECT" {
			return errors.New("consumer rejects it")
		}
		got = append(got, m.ID)
		return nil
	})
	msgs := append(outboxtest.NewMessages(2, "OK", ""), outboxtest.NewMessages(1, "REJECT", "")...)
	if err := backend.Prepare(ctx, msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := tr.Publish(ctx, msgs)
	var be *outbox.BatchError
	if !errors.As(err, &be) || be.Failed[msgs[2].ID] == nil || len(got) != 2 || tr.Len() != 2 {
		t.Fatalf("publish = %v; subscriber got %v", err, got)
	}
	unsubscribe()
	if err := tr.Publish(ctx, msgs); err != nil || len(got) != 2 {
		t.Fatalf("after unsubscribe: %v, subscriber got %d", err, len(got))
	}
}

func TestNilMessageRefused(t *testing.T) {
	tr := memory.New()
	err := tr.Publish(context.Background(), []*outbox.Message{nil})
	if err == nil || !outbox.IsPermanent(err) || tr.Len() != 0 {
		t.Fatalf("publish of a nil message = %v (%d received), want a permanent error", err, tr.Len())
	}
}
