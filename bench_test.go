package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

// The relay engine must never be the bottleneck. BenchmarkRelay drains b.N messages from the
// in-memory store to the memory transport through the full relay (batch 100); BenchmarkRawLoop
// does the same claim-publish-ack loop by hand, with no relay, as the baseline in the same run.
// Compare their events/s:
//
//	go test -run '^$' -bench 'Relay|RawLoop' -benchmem .

func preload(b *testing.B, n int) *memstore.Store {
	b.Helper()
	st, msgs := memstore.New(), outboxtest.NewMessages(n, "EVENT", "")
	for i := 0; i < n; i += 1000 {
		if err := st.Add(context.Background(), msgs[i:min(i+1000, n)]...); err != nil {
			b.Fatal(err)
		}
	}
	return st
}

func BenchmarkRelay(b *testing.B) {
	for _, concurrency := range []int{1, 2} {
		b.Run("concurrency="+string(rune('0'+concurrency)), func(b *testing.B) {
			st := preload(b, b.N)
			tr := memory.New()
			r, err := outbox.NewRelay(st, tr, outbox.Config{BatchSize: 100, Concurrency: concurrency, PollInterval: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			began := time.Now()
			if err := r.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			if err := tr.WaitFor(context.Background(), b.N); err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(began)
			b.StopTimer()
			_ = r.Stop(context.Background())
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		})
	}
}

func BenchmarkRawLoop(b *testing.B) {
	st := preload(b, b.N)
	tr := memory.New()
	ctx := context.Background()
	req := outbox.ClaimRequest{Token: "raw", Limit: 100, Lease: time.Minute}
	b.ReportAllocs()
	b.ResetTimer()
	began := time.Now()
	for done := 0; done < b.N; {
		msgs, err := st.Claim(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if err := tr.Publish(ctx, msgs); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Ack(ctx, req.Token, outboxtest.IDs(msgs)); err != nil {
			b.Fatal(err)
		}
		done += len(msgs)
	}
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "events/s")
}
