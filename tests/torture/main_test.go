//go:build torture

package torture

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true") // loopback only, even by accident
	goleak.VerifyTestMain(m)
}
