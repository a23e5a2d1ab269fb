package outboxtest

import (
	"context"
	"slices"

	memstore "github.com/txoutbox/outbox/store/memory"
)

// Backlog returns a memory store already holding n messages of type typ: the source of the
// benchmarks that measure what a relay adds over a raw loop.
func Backlog(ctx context.Context, n int, typ string) (*memstore.Store, error) {
	st := memstore.New()
	msgs := NewMessages(n, typ, "")
	for i := 0; i < n; i += 1000 {
		if err := st.Add(ctx, msgs[i:min(i+1000, n)]...); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// Median returns the middle value of xs (the mean of the middle two when even), 0 when empty.
// The benchmarks interleave their variants in rounds and report medians, which shrug off the
// stalls of a shared machine.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
