package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox/cmd/outbox/internal/corebench"
)

func TestBenchCorePrintsJSONWithBaselineAndProgress(t *testing.T) {
	old := progressEvery
	progressEvery = time.Millisecond // every run is "long" here, so the progress line shows
	t.Cleanup(func() { progressEvery = old })

	code, stdout, stderr := runCLI(t, nil, "bench", "--only", "core", "--events", "20000", "--rounds", "1")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, stderr)
	}
	var report struct {
		GoVersion string `json:"go_version"`
		CPUs      int    `json:"cpus"`
		Results   struct {
			Core corebench.Result `json:"core"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("bench output is not the JSON report: %v\n%s", err, stdout)
	}
	r := report.Results.Core
	if report.GoVersion == "" || report.CPUs == 0 || r.Events != 20000 || r.Rounds != 1 ||
		r.RawPerSec <= 0 || r.RelayPerSec <= 0 || r.Ratio != r.RelayPerSec/r.RawPerSec {
		t.Errorf("report %+v", report)
	}
	for _, want := range []string{"bench: core: running", "bench: core: still running", "bench: core: done"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}
