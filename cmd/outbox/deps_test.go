package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The daemon is what users run in production: it must not link the testing package, the test
// kit (outboxtest) or anything else that only tests need. Benchmarks live under internal/ and
// share nothing with them.
func TestDaemonDoesNotLinkTestCode(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on PATH: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 || !slices.Contains(deps, "github.com/txoutbox/outbox") {
		t.Fatalf("go list -deps gave %d packages, without core: not the daemon's list", len(deps))
	}
	for _, dep := range deps {
		if dep == "testing" || strings.HasPrefix(dep, "testing/") ||
			strings.HasSuffix(dep, "/outboxtest") || strings.Contains(dep, "/outboxtest/") ||
			strings.HasPrefix(dep, "go.uber.org/goleak") {
			t.Errorf("the outbox daemon depends on %s", dep)
		}
	}
}
