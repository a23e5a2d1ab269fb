package natsbench_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/txoutbox/outbox/cmd/outbox/internal/natsbench"
	"github.com/txoutbox/outbox/outboxtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serverURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_NATS_URL", "nats://127.0.0.1:4222")
}

// needServer returns the NATS test server's URL, or skips (fails in CI) when it does not answer.
func needServer(t *testing.T) string {
	t.Helper()
	url := serverURL()
	nc, err := natsgo.Connect(url, natsgo.Timeout(time.Second))
	if err != nil {
		outboxtest.NeedService(t, "NATS server with JetStream at "+url, err)
	}
	nc.Close()
	return url
}

// A small run, to keep the benchmark working; its numbers mean nothing.
func TestRunSmall(t *testing.T) {
	url := needServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := natsbench.Run(ctx, natsbench.Config{URL: url, Events: 1000, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.RawPerSec <= 0 || res.PreEncodedPerSec <= 0 || res.RelayPerSec <= 0 || res.Ratio <= 0 || len(res.RawRounds) != 1 || res.Server == "" {
		t.Fatalf("implausible result %s", res.JSON())
	}
}

// BenchmarkRelayVsRaw reports the relay's events/s through the NATS transport as a ratio to raw
// PublishMsgAsync on the same connection and MaxPending (building each message in its loop),
// and to the pre-encoded ceiling. Run it once per invocation:
//
//	go test -run '^$' -bench RelayVsRaw -benchtime 1x ./internal/natsbench
func BenchmarkRelayVsRaw(b *testing.B) {
	for range b.N {
		res, err := natsbench.Run(context.Background(), natsbench.Config{URL: serverURL()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.RawPerSec, "raw_events/s")
		b.ReportMetric(res.RelayPerSec, "relay_events/s")
		b.ReportMetric(res.Ratio, "ratio")
		b.ReportMetric(res.PreEncodedRatio, "preencoded_ratio")
		fmt.Println(res.JSON()) // the whole record; b.Log would truncate it
	}
}
