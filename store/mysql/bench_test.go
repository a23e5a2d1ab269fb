package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

// BenchmarkDrain claims and acks a backlog of 2,000 messages spread over keys, 100 a claim,
// ordered and unordered: ns/op is one message's share.
//
//	go test -run '^$' -bench Drain -benchtime 3x .
func BenchmarkDrain(b *testing.B) {
	for _, keys := range []int{10, 1000} {
		for _, ordered := range []bool{false, true} {
			b.Run(fmt.Sprintf("keys=%d/ordered=%v", keys, ordered), func(b *testing.B) {
				ctx := context.Background()
				s := benchStore(b)
				const backlog = 2000
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					var msgs []*outbox.Message
					for i := range backlog {
						msgs = append(msgs, &outbox.Message{Type: "T", Key: fmt.Sprint("k", i%keys), Payload: []byte("{}")})
					}
					for start := 0; start < backlog; start += 500 {
						if _, err := Execute(ctx, s, func(context.Context, *sql.Tx) (int, error) { return 0, nil }, msgs[start:start+500]...); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
					for n, i := 0, 0; n < backlog; i++ {
						token := fmt.Sprint("b", i)
						got, err := s.Claim(ctx, outbox.ClaimRequest{Token: token, Limit: 100, Lease: time.Minute, Ordered: ordered})
						if err != nil || len(got) == 0 {
							b.Fatalf("claim = %d, %v", len(got), err)
						}
						ids := make([]string, len(got))
						for j, m := range got {
							ids[j] = m.ID
						}
						if _, err := s.Ack(ctx, token, ids); err != nil {
							b.Fatal(err)
						}
						n += len(got)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*backlog), "ns/msg")
			})
		}
	}
}

func benchStore(b *testing.B) *Store {
	b.Helper()
	ctx := context.Background()
	table := fmt.Sprintf("outbox_bench_%d", time.Now().UnixNano()%1e9)
	s, err := New(ctx, Config{URL: outbox.Secret(testURL()), Table: table})
	if err != nil {
		b.Skipf("MariaDB not reachable: %v", err)
	}
	b.Cleanup(func() {
		_, _ = s.DB().ExecContext(ctx, "DROP TABLE IF EXISTS "+s.table+", "+s.keys+", "+quote(s.cfg.Table+"_schema"))
		_ = s.Close()
	})
	if err := s.EnsureSchema(ctx); err != nil {
		b.Fatal(err)
	}
	return s
}
