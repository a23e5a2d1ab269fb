package inbox

import (
	"fmt"

	"github.com/txoutbox/outbox/core"
)

// Bounds on what Handle records (core's, the same for every store).
const (
	// MaxConsumerLength bounds a consumer name, in bytes.
	MaxConsumerLength = core.MaxInboxConsumerLength
	// MaxIDLength bounds a message ID, in bytes.
	MaxIDLength = core.MaxInboxIDLength
)

// invalid wraps a bad argument of op with the package's prefix.
func invalid(op string, err error) error { return fmt.Errorf("%s: %s: %w", component, op, err) }

// checkArgs validates what Handle is given (core.CheckInboxArgs), naming the first problem.
func checkArgs(op, consumer string, msg *core.Message, noFn bool) error {
	if err := core.CheckInboxArgs(consumer, msg, noFn); err != nil {
		return invalid(op, err)
	}
	return nil
}
