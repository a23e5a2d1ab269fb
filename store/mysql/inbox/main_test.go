package inbox_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The store starts goroutines through database/sql and context.AfterFunc; none may outlive it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
