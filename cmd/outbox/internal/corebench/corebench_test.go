package corebench

import (
	"context"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunMeasuresBothAndStopsItsRelays(t *testing.T) {
	r, err := Run(context.Background(), Options{Events: 5000, BatchSize: 50, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.RawRuns) != 2 || len(r.RelayRuns) != 2 || r.RawPerSec <= 0 || r.RelayPerSec <= 0 ||
		r.Ratio != r.RelayPerSec/r.RawPerSec || r.Concurrency != 2 || r.BatchSize != 50 {
		t.Errorf("result %+v", r)
	}
}

func TestRunRejectsNegativeOptions(t *testing.T) {
	if _, err := Run(context.Background(), Options{Events: -1}); err == nil {
		t.Fatal("negative Events accepted")
	}
}
