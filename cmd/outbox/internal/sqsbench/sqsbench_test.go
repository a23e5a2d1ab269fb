package sqsbench_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/txoutbox/outbox/cmd/outbox/internal/sqsbench"
	"github.com/txoutbox/outbox/outboxtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// needEndpoint returns the SQS test endpoint, or skips (fails in CI) when nothing listens.
func needEndpoint(t *testing.T) string {
	t.Helper()
	endpoint := outboxtest.ServiceAddr("OUTBOX_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566")
	u, err := url.Parse(endpoint)
	if err == nil {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", u.Host, time.Second); err == nil {
			c.Close()
			return endpoint
		}
	}
	outboxtest.NeedService(t, "SQS server (fauxqs: scripts/services/fauxqs start) at "+endpoint, err)
	return ""
}

// A small run, to keep the benchmark working; its numbers mean nothing.
func TestRunSmall(t *testing.T) {
	endpoint := needEndpoint(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, fifo := range []bool{false, true} {
		res, err := sqsbench.Run(ctx, sqsbench.Config{Endpoint: endpoint, Events: 500, Rounds: 1, FIFOGroup: fifo})
		if err != nil {
			t.Fatal(err)
		}
		if res.RawPerSec <= 0 || res.RelayPerSec <= 0 || res.Ratio <= 0 || len(res.RawRounds) != 1 || res.FIFOGroup != fifo {
			t.Fatalf("implausible result %s", res.JSON())
		}
	}
}

// BenchmarkRelayVsRaw reports the relay's events/s through the SQS transport as a ratio to raw
// SendMessageBatch calls on the same client and concurrency. Run it once per invocation:
//
//	go test -run '^$' -bench RelayVsRaw -benchtime 1x ./sqsbench
func BenchmarkRelayVsRaw(b *testing.B) {
	endpoint := outboxtest.ServiceAddr("OUTBOX_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566")
	for range b.N {
		res, err := sqsbench.Run(context.Background(), sqsbench.Config{Endpoint: endpoint})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.RawPerSec, "raw_events/s")
		b.ReportMetric(res.RelayPerSec, "relay_events/s")
		b.ReportMetric(res.Ratio, "ratio")
		fmt.Println(res.JSON()) // the whole record; b.Log would truncate it
	}
}

// BenchmarkFIFOGroup is BenchmarkRelayVsRaw in ordered mode on a FIFO queue, every event in one
// message group:
//
//	go test -run '^$' -bench FIFOGroup -benchtime 1x ./sqsbench
func BenchmarkFIFOGroup(b *testing.B) {
	endpoint := outboxtest.ServiceAddr("OUTBOX_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566")
	for range b.N {
		res, err := sqsbench.Run(context.Background(), sqsbench.Config{Endpoint: endpoint, FIFOGroup: true, Rounds: 7})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.Ratio, "ratio")
		fmt.Println(res.JSON())
	}
}
