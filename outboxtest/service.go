package outboxtest

import (
	"os"
	"strings"
	"testing"
)

// serviceVarPrefix starts the name of every variable that points the tests at a server.
const serviceVarPrefix = "OUTBOX_TEST_"

// ServiceAddr returns where the test server named by envVar listens: the variable's value when
// set, def (the address scripts/services starts it on) otherwise. envVar must be an
// OUTBOX_TEST_* variable: this reads test settings, not configuration, and panics on anything
// else so it cannot turn into a general environment reader.
func ServiceAddr(envVar, def string) string {
	if !strings.HasPrefix(envVar, serviceVarPrefix) {
		panic("outboxtest: ServiceAddr reads " + serviceVarPrefix + "* variables only, not " + envVar)
	}
	if v := os.Getenv(envVar); v != "" {
		return v
	}
	return def
}

// inCI reports whether the tests run in continuous integration (CI is set), where every
// service a test needs must be there.
func inCI() bool { return os.Getenv("CI") != "" }

// NeedService handles a test service that could not be reached: run by hand, the test is skipped
// with the reason; in CI it fails, so a missing service can never pass as green.
func NeedService(t testing.TB, service string, err error) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s is required in CI but unavailable: %v", service, err)
	}
	t.Skipf("%s unavailable (start it with scripts/services, or set its %s* variable): %v", service, serviceVarPrefix, err)
}
