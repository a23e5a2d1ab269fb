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

// argError is a bad argument: its text names it, and errors.Is matches its category
// (core.ErrInvalidMessage for the message, core.ErrInvalidConfig for the caller's own setup).
type argError struct {
	what, problem string
	category      error
}

func (e *argError) Error() string        { return e.what + " " + e.problem }
func (e *argError) Is(target error) bool { return target == e.category }

// checkArgs validates what Handle is given, naming the first problem.
func checkArgs(op, consumer string, msg *core.Message, noFn bool) error {
	bad := func(what, problem string, category error) error {
		return fmt.Errorf("%s: %s: %w", component, op, &argError{what, problem, category})
	}
	if p := textProblem(consumer, MaxConsumerLength); p != "" {
		return bad("consumer", p, core.ErrInvalidConfig)
	}
	if msg == nil {
		return bad("message", "is nil", core.ErrInvalidMessage)
	}
	if p := textProblem(msg.ID, MaxIDLength); p != "" {
		return bad("message id", p, core.ErrInvalidMessage)
	}
	if noFn {
		return bad("fn", "is nil", core.ErrInvalidConfig)
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
