package sqlitebench_test

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/txoutbox/outbox/cmd/outbox/internal/sqlitebench"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The benchmark at toy sizes: it runs end to end and reports sane numbers.
func TestOrderedSmall(t *testing.T) {
	r, err := sqlitebench.Ordered(context.Background(), sqlitebench.Options{
		Backlogs: []sqlitebench.Backlog{{Keys: 20, PerKey: 10}, {Keys: 1, PerKey: 200}}, BatchSize: 50, Rounds: 1, Dir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range r.Backlogs {
		if b.UnorderedPerSec <= 0 || b.OrderedPerSec <= 0 || b.Ratio <= 0 {
			t.Fatalf("backlog %+v: %+v", b.Backlog, b)
		}
	}
}

// BenchmarkOrdered runs each backlog once per variant; OUTBOX_BENCH_ROUNDS sets more rounds
// (medians are reported, with each round's rates).
func BenchmarkOrdered(b *testing.B) {
	rounds, _ := strconv.Atoi(os.Getenv("OUTBOX_BENCH_ROUNDS"))
	for b.Loop() {
		r, err := sqlitebench.Ordered(context.Background(), sqlitebench.Options{Rounds: max(rounds, 1), Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		for _, bl := range r.Backlogs {
			b.Logf("%d keys x %d: unordered %.0f/s, ordered %.0f/s, ratio %.2f (rounds: unordered %.0f, ordered %.0f)",
				bl.Keys, bl.PerKey, bl.UnorderedPerSec, bl.OrderedPerSec, bl.Ratio, bl.UnorderedRuns, bl.OrderedRuns)
		}
	}
}
