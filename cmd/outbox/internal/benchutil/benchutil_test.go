package benchutil_test

import (
	"context"
	"testing"

	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
)

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := benchutil.Median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestBacklog(t *testing.T) {
	for _, n := range []int{0, 999, 2500} {
		st, err := benchutil.Backlog(context.Background(), n, "BENCH")
		if err != nil {
			t.Fatal(err)
		}
		if c, err := st.Counts(context.Background()); err != nil || c.Pending != int64(n) {
			t.Fatalf("backlog of %d: counts %+v, %v", n, c, err)
		}
	}
}
