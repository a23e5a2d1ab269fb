package kafka_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox/core"
	"github.com/txoutbox/outbox/transport/kafka"
)

func TestTmpPubOnly(t *testing.T) {
	c := needFake(t)
	topic := c.createTopic(t, 6, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	ctx := context.Background()
	const n, batch, conc = 800, 250, 4
	var all [][]*core.Message
	for range n {
		ms := prepared(t, messages(batch, "T", "")...)
		for j, m := range ms {
			m.Key = string(rune('a' + j%26))
		}
		all = append(all, ms)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := tr.Publish(ctx, all[i]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("publish %.0f/s", n*batch/time.Since(start).Seconds())
}
