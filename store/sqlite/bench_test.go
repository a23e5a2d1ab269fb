package sqlite_test

// Benchmarks, each against a raw baseline in the same run (go test -run '^$' -bench . ):
//
//   - Write: a one-row business transaction, raw versus through Execute with one event. The
//     design's target is an outbox overhead of at most 25%.
//   - Drain: emptying a backlog of b.N messages, raw (DELETE ... RETURNING in batches of 100)
//     versus Claim+Ack in batches of 100, versus the relay publishing to the memory transport.
//   - ClaimOrdered: one ordered claim of 100 heads (then released), with and without 20000
//     messages queued behind one busy key, on a database that does not wait for the disk. The
//     ratio shows the claim does not walk that queue.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/sqlite"
	"github.com/txoutbox/outbox/transport/memory"
)

func BenchmarkWrite(b *testing.B) {
	ctx := context.Background()
	// "durable" is the default: every commit waits for the disk, which dominates both arms.
	// "nosync" (synchronous=OFF) removes the disk from both, to show the CPU cost of the event.
	for _, mode := range []string{"durable", "nosync"} {
		b.Run(mode+"/raw", func(b *testing.B) {
			s := benchUsersStore(b, mode)
			defer reportCPU(b)()
			for i := 0; b.Loop(); i++ {
				tx, err := s.DB().BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := insertUser(fmt.Sprint("u", i))(ctx, tx); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(mode+"/outbox", func(b *testing.B) {
			s := benchUsersStore(b, mode)
			defer reportCPU(b)()
			for i := 0; b.Loop(); i++ {
				if _, err := sqlite.Execute(ctx, s, insertUser(fmt.Sprint("u", i)), msg("USER_CREATED", "")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDrain(b *testing.B) {
	ctx := context.Background()
	const batch = 100
	b.Run("raw", func(b *testing.B) {
		s := benchBacklog(b)
		raw := `DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT ?)
			RETURNING seq, id, type, key, payload, result, headers, created_at, attempts`
		drained := 0
		start := time.Now()
		for drained < b.N {
			rows, err := s.DB().QueryContext(ctx, raw, batch)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
				var (
					seq, created, attempts int64
					id, typ, key, payload  string
					result, headers        sql.NullString
				)
				if err := rows.Scan(&seq, &id, &typ, &key, &payload, &result, &headers, &created, &attempts); err != nil {
					b.Fatal(err)
				}
				drained++
			}
			if err := errors.Join(rows.Err(), rows.Close()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
	b.Run("claim-ack", func(b *testing.B) {
		s := benchBacklog(b)
		drained := 0
		start := time.Now()
		for drained < b.N {
			msgs, err := s.Claim(ctx, outbox.ClaimRequest{Token: "bench", Limit: batch, Lease: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]string, len(msgs))
			for i, m := range msgs {
				ids[i] = m.ID
			}
			if _, err := s.Ack(ctx, "bench", ids); err != nil {
				b.Fatal(err)
			}
			drained += len(msgs)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
	b.Run("relay", func(b *testing.B) {
		s := benchBacklog(b)
		tr := memory.New()
		r, err := outbox.NewRelay(s, tr, outbox.Config{BatchSize: batch})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := r.Start(ctx); err != nil {
			b.Fatal(err)
		}
		if err := tr.WaitFor(ctx, b.N); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		if err := r.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	})
}

func BenchmarkClaimOrdered(b *testing.B) {
	ctx := context.Background()
	for _, queued := range []int{0, 20000} {
		b.Run(fmt.Sprint("queued=", queued), func(b *testing.B) {
			// Without waiting for the disk, so that what is compared is the work of the claim.
			s := open(b, sqlite.Config{DSN: filepath.Join(b.TempDir(), "bench.db") + "?_pragma=synchronous(OFF)"})
			var msgs []*outbox.Message
			for range queued {
				msgs = append(msgs, msg("T", "busy"))
			}
			for i := range 100 {
				msgs = append(msgs, msg("T", fmt.Sprint("key-", i)))
			}
			for start := 0; start < len(msgs); start += 1000 {
				add(b, s, msgs[start:min(start+1000, len(msgs))]...)
			}
			// The busy key's head is leased: everything queued behind it is blocked.
			if queued > 0 {
				claim(b, s, outbox.ClaimRequest{Token: "holder", Limit: 1, Lease: time.Hour, Ordered: true})
			}
			for b.Loop() {
				got, err := s.Claim(ctx, outbox.ClaimRequest{Token: "bench", Limit: 100, Lease: time.Minute, Ordered: true})
				if err != nil || len(got) != 100 {
					b.Fatalf("claimed %d: %v", len(got), err)
				}
				// Release them for the next round, as a relay stopping would.
				fs := make([]outbox.Failure, len(got))
				for i, m := range got {
					fs[i] = outbox.Failure{ID: m.ID, Error: "released", Delay: -time.Second}
				}
				if _, err := s.Nack(ctx, "bench", fs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// reportCPU adds the process's CPU time per operation (user+system) to the results: on a
// machine shared with other work, wall time per operation varies with their load, CPU time much
// less. Call it after the setup and defer what it returns.
func reportCPU(b *testing.B) func() {
	before := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpuTime()-before)/float64(b.N), "cpu-ns/op")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchUsersStore(b *testing.B, mode string) *sqlite.Store {
	cfg := sqlite.Config{Path: filepath.Join(b.TempDir(), "bench.db")}
	if mode == "nosync" {
		cfg = sqlite.Config{DSN: cfg.Path + "?_pragma=synchronous(OFF)"}
	}
	s := open(b, cfg)
	if _, err := s.DB().Exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)`); err != nil {
		b.Fatal(err)
	}
	return s
}

// benchBacklog returns a store holding b.N pending messages, written outside the timer.
func benchBacklog(b *testing.B) *sqlite.Store {
	b.StopTimer()
	defer b.StartTimer()
	s := open(b, sqlite.Config{Path: filepath.Join(b.TempDir(), "bench.db")})
	for left := b.N; left > 0; left -= 1000 {
		msgs := make([]*outbox.Message, min(left, 1000))
		for i := range msgs {
			msgs[i] = msg("USER_CREATED", "")
		}
		add(b, s, msgs...)
	}
	return s
}
