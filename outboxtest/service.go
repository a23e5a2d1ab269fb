package outboxtest

import (
	"os"
	"testing"
)

// InCI reports whether the tests run in continuous integration (CI is set), where every
// service a test needs must be there.
func InCI() bool { return os.Getenv("CI") != "" }

// NeedService handles a test service that could not be reached: run by hand, the test is skipped
// with the reason; in CI it fails, so a missing service can never pass as green.
func NeedService(t testing.TB, service string, err error) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required in CI but unavailable: %v", service, err)
	}
	t.Skipf("%s unavailable (start it with scripts/services, or set its OUTBOX_TEST_* variable): %v", service, err)
}

// Env returns the environment variable key, or def when it is unset.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
