package outboxtest_test

import (
	"context"
	"testing"

	"github.com/txoutbox/outbox/outboxtest"
)

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := outboxtest.Median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestBacklog(t *testing.T) {
	st, err := outboxtest.Backlog(context.Background(), 2500, "BENCH")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := st.Counts(context.Background()); err != nil || c.Pending != 2500 {
		t.Fatalf("backlog counts %+v, %v; want 2500 pending", c, err)
	}
}
