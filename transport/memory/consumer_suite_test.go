package memory_test

import (
	"testing"

	"github.com/txoutbox/outbox/consume"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/memory"
)

func TestConsumerSuite(t *testing.T) {
	outboxtest.RunConsumerSuite(t, func(t *testing.T) outboxtest.ConsumerHarness {
		tr := memory.New()
		return outboxtest.ConsumerHarness{
			Transport: tr,
			NewConsumer: func(t *testing.T, h consume.Handler) outboxtest.ConsumerUnderTest {
				c, err := memory.NewConsumer(t.Context(), memory.ConsumerConfig{Transport: tr, Handler: h, Concurrency: 4})
				if err != nil {
					t.Fatal(err)
				}
				return c
			},
		}
	}, outboxtest.ConsumerFeatures{KeyOrder: true})
}
