package core_test

import (
	"context"
	memstore "github.com/txoutbox/outbox/store/memory"
	"testing"
	"time"

	"github.com/txoutbox/outbox/core"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/memory"
)

// The relay engine must never be the bottleneck. BenchmarkRelay drains b.N messages from the
// in-memory store to the memory transport through the full relay (batch 100); BenchmarkRawLoop
// does the same claim-publish-ack loop by hand, with no relay, as the baseline in the same run.
// Compare their events/s:
//
//	go test -run '^$' -bench 'Relay|RawLoop' -benchmem ./core

func preload(b *testing.B, n int) *memstore.Store {
	b.Helper()
	st, err := outboxtest.Backlog(context.Background(), n, "EVENT")
	if err != nil {
		b.Fatal(err)
	}
	return st
}

func BenchmarkRelay(b *testing.B) {
	for _, concurrency := range []int{1, 2} {
		b.Run("concurrency="+string(rune('0'+concurrency)), func(b *testing.B) {
			st := preload(b, b.N)
			tr := memory.New()
			r, err := core.NewRelay(st, tr, core.Config{BatchSize: 100, Concurrency: concurrency, PollInterval: time.Hour})
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
	req := core.ClaimRequest{Owner: "raw", Limit: 100, Lease: time.Minute}
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
		if err := st.Ack(ctx, req.Owner, outboxtest.IDs(msgs)); err != nil {
			b.Fatal(err)
		}
		done += len(msgs)
	}
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "events/s")
}
