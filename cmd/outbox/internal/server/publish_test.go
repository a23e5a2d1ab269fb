package server

import (
	"context"
	"errors"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/txoutbox/outbox"
)

// Every publish, failed or not, is one observation of the histogram, and errors pass through.
func TestPublishDurationObservesEveryBatch(t *testing.T) {
	h, mw := NewPublishDuration()
	ok := mw(func(context.Context, []*outbox.Message) error { return nil })
	bad := mw(func(context.Context, []*outbox.Message) error { return errors.New("broker down") })
	if err := ok(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := bad(context.Background(), nil); err == nil {
		t.Fatal("the middleware swallowed the publish's error")
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetHistogram().GetSampleCount(); got != 2 {
		t.Errorf("sample count %d, want 2", got)
	}
}
