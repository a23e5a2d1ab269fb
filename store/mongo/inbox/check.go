package inbox

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/txoutbox/outbox/core"
)

// Bounds on what Handle records.
const (
	// MaxConsumerLength bounds a consumer name, in bytes.
	MaxConsumerLength = 255
	// MaxIDLength bounds a message ID, in bytes. Outbox IDs are UUIDs; other producers' IDs
	// are accepted as text up to this length.
	MaxIDLength = 255
)

// messageError is a bad message given to Handle: a bad argument (core.ErrInvalidArgument)
// that is also an invalid message (core.ErrInvalidMessage).
type messageError struct{ what, problem string }

func (e *messageError) Error() string { return "invalid argument: " + e.what + " " + e.problem }
func (e *messageError) Is(target error) bool {
	return target == core.ErrInvalidArgument || target == core.ErrInvalidMessage
}

// invalid wraps a bad argument of op with the package's prefix.
func invalid(op string, err error) error { return fmt.Errorf("%s: %s: %w", component, op, err) }

// checkArgs validates what Handle is given, naming the first problem.
func checkArgs(op, consumer string, msg *core.Message, noFn bool) error {
	if p := textProblem(consumer, MaxConsumerLength); p != "" {
		return invalid(op, core.InvalidArgument("consumer", p))
	}
	if msg == nil {
		return invalid(op, &messageError{"message", "is nil"})
	}
	if p := textProblem(msg.ID, MaxIDLength); p != "" {
		return invalid(op, &messageError{"message id", p})
	}
	if noFn {
		return invalid(op, core.InvalidArgument("fn", "is nil"))
	}
	return nil
}

// textProblem says what makes s unusable as a consumer name or message ID, or "".
func textProblem(s string, limit int) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > limit:
		return fmt.Sprintf("is %d bytes long; the limit is %d", len(s), limit)
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Sprintf("%q contains a control character", s)
	}
	return ""
}
