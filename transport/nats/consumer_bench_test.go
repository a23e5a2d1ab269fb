package nats_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// BenchmarkConsumerVsRaw reads one stream of events twice per round through two durable
// consumers: with raw nats.go (pull requests of 8, 8 workers decoding the envelope and
// confirming each ack: the work any program consuming outbox messages with explicit acks
// does) — the baseline — and with a Consumer of Concurrency 8 and a handler that does nothing.
// It reports the median of the rounds' rates and of their ratios (consumer/raw). Run it with -benchtime 1x:
//
//	go test -run '^$' -bench ConsumerVsRaw -benchtime 1x
func BenchmarkConsumerVsRaw(b *testing.B) {
	const events, concurrency = 5000, 8
	s := needServer(b)
	st := s.createStream(b, nil)
	tr := newTransport(b, outboxnats.Config{Subject: st.subject()})
	for i := 0; i < events; i += 500 {
		if err := tr.Publish(testCtx(b), prepared(b, messages(500, "BENCH", "")...)); err != nil {
			b.Fatal(err)
		}
	}
	var raws, conss, ratios []float64
	for i := 0; i < b.N; i++ {
		rawDurable := st.durable(b, func(c *jetstream.ConsumerConfig) { c.Durable = fmt.Sprintf("raw%d", i) })
		consDurable := st.durable(b, func(c *jetstream.ConsumerConfig) { c.Durable = fmt.Sprintf("consumer%d", i) })
		var raw, cons float64
		if i%2 == 0 { // alternate, so neither always runs on the warmer server
			raw = events / rawRead(b, st, rawDurable, events, concurrency).Seconds()
			cons = events / consumerRead(b, st, consDurable, events, concurrency).Seconds()
		} else {
			cons = events / consumerRead(b, st, consDurable, events, concurrency).Seconds()
			raw = events / rawRead(b, st, rawDurable, events, concurrency).Seconds()
		}
		raws, conss, ratios = append(raws, raw), append(conss, cons), append(ratios, cons/raw)
	}
	b.ReportMetric(median(raws), "raw-events/s")
	b.ReportMetric(median(conss), "consumer-events/s")
	b.ReportMetric(median(ratios), "consumer/raw")
}

func rawRead(b *testing.B, st *stream, durable string, events, concurrency int) time.Duration {
	cons, err := st.js.Consumer(testCtx(b), durable)
	if err != nil {
		b.Fatal(err)
	}
	work := make(chan jetstream.Msg, concurrency)
	var done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				if _, err := backend.DecodeEnvelope(m.Data()); err != nil {
					b.Error(err)
				}
				if err := m.DoubleAck(context.Background()); err != nil {
					b.Error(err)
				}
				done.Add(1)
			}
		}()
	}
	for received := 0; received < events; {
		batch, err := cons.Fetch(concurrency, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			b.Fatal(err)
		}
		for m := range batch.Messages() {
			received++
			work <- m
		}
	}
	close(work)
	wg.Wait()
	return time.Since(start)
}

func consumerRead(b *testing.B, st *stream, durable string, events, concurrency int) time.Duration {
	c, err := outboxnats.NewConsumer(context.Background(), outboxnats.ConsumerConfig{
		Connection:  outboxnats.Connection{URL: outboxnats.URL(serverURL())},
		Stream:      st.name,
		Durable:     durable,
		Concurrency: concurrency,
		Handler:     func(context.Context, *outbox.Message) error { return nil },
	})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := c.Start(testCtx(b)); err != nil {
		b.Fatal(err)
	}
	for c.Stats().Acked < int64(events) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	if err := c.Stop(testCtx(b)); err != nil {
		b.Fatal(err)
	}
	return elapsed
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
