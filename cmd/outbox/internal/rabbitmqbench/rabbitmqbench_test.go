package rabbitmqbench_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox/cmd/outbox/internal/rabbitmqbench"
	"github.com/txoutbox/outbox/outboxtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// needBroker returns the RabbitMQ test URL, or skips (fails in CI) when the broker does not
// answer.
func needBroker(t *testing.T) string {
	t.Helper()
	url := outboxtest.ServiceAddr("OUTBOX_TEST_RABBITMQ_URL", rabbitmqbench.DefaultURL)
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if err != nil {
		outboxtest.NeedService(t, "RabbitMQ", err)
	}
	_ = conn.Close()
	return url
}

// A small run, to keep the benchmark working; its numbers mean nothing.
func TestRunSmall(t *testing.T) {
	url := needBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := rabbitmqbench.Run(ctx, rabbitmqbench.Config{URL: url, Events: 1000, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.RawPerSec <= 0 || res.RelayPerSec <= 0 || res.Ratio <= 0 || len(res.RawRounds) != 1 || res.Window != 1000 {
		t.Fatalf("implausible result %s", res.JSON())
	}
}

// BenchmarkRelayVsRaw reports the relay's events/s through the RabbitMQ transport as a ratio
// to raw confirmed publishing with the same window. Run it once per invocation:
//
//	go test -run '^$' -bench RelayVsRaw -benchtime 1x ./internal/rabbitmqbench
func BenchmarkRelayVsRaw(b *testing.B) {
	url := outboxtest.ServiceAddr("OUTBOX_TEST_RABBITMQ_URL", rabbitmqbench.DefaultURL)
	for range b.N {
		res, err := rabbitmqbench.Run(context.Background(), rabbitmqbench.Config{URL: url})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.RawPerSec, "raw_events/s")
		b.ReportMetric(res.RelayPerSec, "relay_events/s")
		b.ReportMetric(res.Ratio, "ratio")
		fmt.Println(res.JSON()) // the whole record; b.Log would truncate it
	}
}
