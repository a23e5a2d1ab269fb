// Package benchutil holds what the benchmark harnesses of the outbox command share: a backlog to
// drain and the median that every result reports. It lives beside them, under the command, so
// neither the daemon's libraries nor the test kit (outboxtest) carry benchmark code.
package benchutil

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/txoutbox/outbox/core"
	memstore "github.com/txoutbox/outbox/store/memory"
)

// Backlog returns a memory store already holding n messages of type typ: the source of the
// benchmarks that measure what a relay adds over a raw loop.
func Backlog(ctx context.Context, n int, typ string) (*memstore.Store, error) {
	st := memstore.New()
	for i := 0; i < n; i += 1000 {
		batch := make([]*core.Message, min(1000, n-i))
		for j := range batch {
			batch[j] = &core.Message{Type: typ, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i+j))}
		}
		if err := st.Add(ctx, batch...); err != nil {
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
