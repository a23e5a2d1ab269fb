package kafkabench_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox/cmd/outbox/internal/kafkabench"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// brokers returns the cluster named by OUTBOX_TEST_KAFKA_BROKERS, or nil for the in-process
// kfake cluster.
func brokers() []string {
	if v := os.Getenv("OUTBOX_TEST_KAFKA_BROKERS"); v != "" {
		return strings.Split(v, ",")
	}
	return nil
}

// A small run, unordered and ordered, to keep the benchmark working; its numbers mean nothing.
func TestRunSmall(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%t", ordered), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := kafkabench.Run(ctx, kafkabench.Config{Brokers: brokers(), Events: 2000, Rounds: 1, Ordered: ordered, ShortEvents: 500, ShortRounds: 2})
			if err != nil {
				t.Fatal(err)
			}
			if res.RawPerSec <= 0 || res.PreEncodedPerSec <= 0 || res.RelayPerSec <= 0 || res.Ratio <= 0 || len(res.RawRounds) != 1 || res.Ordered != ordered {
				t.Fatalf("implausible result %s", res.JSON())
			}
			if s := res.Short; s == nil || s.Events != 500 || len(s.RoundRatios) != 2 || s.Ratio <= 0 || s.Ordered != ordered {
				t.Fatalf("implausible short-drain result %s", res.JSON())
			}
		})
	}
}

func TestRunRejectsNegative(t *testing.T) {
	if _, err := kafkabench.Run(context.Background(), kafkabench.Config{Events: -1}); err == nil {
		t.Fatal("Run accepted a negative event count")
	}
}

// BenchmarkRelayVsRaw reports the relay's events/s through the Kafka transport as a ratio to a
// raw franz-go client with the same producer settings, concurrency and ordering. Ordered, it runs
// twice: with the default 100 keys, where each ordered claim of the memory store holds every key
// so the relay has one batch in flight, and with 1000 keys, where the four workers' claims cover
// different keys. Run it once per invocation:
//
//	go test -run '^$' -bench RelayVsRaw -benchtime 1x ./internal/kafkabench
func BenchmarkRelayVsRaw(b *testing.B) {
	for _, c := range []struct {
		name    string
		ordered bool
		keys    int
	}{{"ordered=false", false, 0}, {"ordered=true", true, 0}, {"ordered=true,keys=1000", true, 1000}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				res, err := kafkabench.Run(context.Background(), kafkabench.Config{Brokers: brokers(), Ordered: c.ordered, Keys: c.keys})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res.RawPerSec, "raw_events/s")
				b.ReportMetric(res.RelayPerSec, "relay_events/s")
				b.ReportMetric(res.Ratio, "ratio")
				b.ReportMetric(float64(res.RelayPublishesInFlight), "publishes_in_flight")
				fmt.Println(res.JSON()) // the whole record; b.Log would truncate it
			}
		})
	}
}
