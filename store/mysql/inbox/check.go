package inbox

import (
	"fmt"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Bounds on what Handle records (the root package's, the same for every store).
const (
	// MaxConsumerLength bounds a consumer name, in bytes.
	MaxConsumerLength = backend.MaxInboxConsumerLength
	// MaxIDLength bounds a message ID, in bytes.
	MaxIDLength = backend.MaxInboxIDLength
)

// invalid wraps a bad argument of op with the package's prefix.
func invalid(op string, err error) error { return fmt.Errorf("%s: %s: %w", component, op, err) }

// checkArgs validates what Handle is given (backend.CheckInboxArgs), naming the first problem.
func checkArgs(op, consumer string, msg *outbox.Message, noFn bool) error {
	if err := backend.CheckInboxArgs(consumer, msg, noFn); err != nil {
		return invalid(op, err)
	}
	return nil
}
