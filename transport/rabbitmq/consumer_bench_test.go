package rabbitmq_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// BenchmarkConsumerVsRaw consumes the same backlog of envelopes with the Consumer and with raw
// amqp091-go (a connection and channel of its own with the same prefetch, as many goroutines decoding the envelope and
// acknowledging each delivery), alternating within each iteration, and reports both rates and
// the median of the per-iteration ratios (consumer / raw). Run with -benchtime 11x.
func BenchmarkConsumerVsRaw(b *testing.B) {
	const backlog, concurrency = 2000, 8
	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		b.Skipf("RabbitMQ: %v", err)
	}
	b.Cleanup(func() { _ = conn.Close() }) // after the queue's cleanup, which needs it
	br := &broker{url: brokerURL(), admin: conn}
	q := br.queue(b, nil)
	tr, err := rabbitmq.New(context.Background(), rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(brokerURL())}, RoutingKey: q})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	fill := func() {
		msgs := make([]*outbox.Message, backlog)
		for i := range msgs {
			msgs[i] = &outbox.Message{Type: "BENCH", Payload: []byte(`{"order":12345,"amount":"19.99","currency":"EUR","customer":"c-42"}`)}
		}
		if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{}); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < backlog; i += 250 {
			if err := tr.Publish(context.Background(), msgs[i:i+250]); err != nil {
				b.Fatal(err)
			}
		}
	}
	var rawTotal, consTotal time.Duration
	ratios := make([]float64, 0, b.N)
	b.StopTimer()
	for range b.N {
		fill()
		start := time.Now()
		rawConsume(b, q, backlog, concurrency)
		rawTime := time.Since(start)
		fill()
		start = time.Now()
		consumerConsume(b, q, backlog, concurrency)
		consTime := time.Since(start)
		rawTotal, consTotal = rawTotal+rawTime, consTotal+consTime
		ratios = append(ratios, rawTime.Seconds()/consTime.Seconds())
	}
	slices.Sort(ratios)
	b.ReportMetric(float64(backlog*b.N)/rawTotal.Seconds(), "raw-msgs/s")
	b.ReportMetric(float64(backlog*b.N)/consTotal.Seconds(), "consumer-msgs/s")
	b.ReportMetric(ratios[len(ratios)/2], "ratio")
}

// rawConsume dials a connection of its own, as the Consumer does on Start, and closes it.
func rawConsume(b *testing.B, q string, backlog, concurrency int) {
	conn, err := amqp.Dial(brokerURL())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Qos(concurrency, 0, false); err != nil {
		b.Fatal(err)
	}
	deliveries, err := ch.Consume(q, "bench-raw", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	var done atomic.Int64
	finished := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				select {
				case d := <-deliveries:
					if _, err := backend.DecodeEnvelope(d.Body); err != nil {
						b.Error(err)
					}
					if err := d.Ack(false); err != nil {
						b.Error(err)
					}
					if done.Add(1) == int64(backlog) {
						once.Do(func() { close(finished) })
					}
				case <-finished:
					return
				}
			}
		})
	}
	<-finished
	wg.Wait()
	if err := ch.Cancel("bench-raw", false); err != nil {
		b.Fatal(err)
	}
}

func consumerConsume(b *testing.B, q string, backlog, concurrency int) {
	var done atomic.Int64
	finished := make(chan struct{})
	c, err := rabbitmq.NewConsumer(context.Background(), rabbitmq.ConsumerConfig{Connection: rabbitmq.Connection{URL: rabbitmq.URL(brokerURL())},
		Queue:       q,
		Concurrency: concurrency,
		Handler: func(context.Context, *outbox.Message) error {
			if done.Add(1) == int64(backlog) {
				close(finished)
			}
			return nil
		}})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	<-finished
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil { // waits for the last acks
		b.Fatal(err)
	}
}
