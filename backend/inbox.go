package backend

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/txoutbox/outbox"
)

// Bounds on what an inbox records, the same for every store's inbox.
const (
	// MaxInboxConsumerLength bounds a consumer name, in bytes.
	MaxInboxConsumerLength = 255
	// MaxInboxIDLength bounds the ID of a message an inbox records, in bytes. Outbox IDs are
	// UUIDs; other producers' IDs are accepted as text up to this length.
	MaxInboxIDLength = 255
)

// inboxMessageError is a bad message given to an inbox: a bad argument that is also an invalid
// message, so it matches both outbox.ErrInvalidArgument and outbox.ErrInvalidMessage.
type inboxMessageError struct{ what, problem string }

func (e *inboxMessageError) Error() string { return "invalid argument: " + e.what + " " + e.problem }
func (e *inboxMessageError) Is(target error) bool {
	return target == outbox.ErrInvalidArgument || target == outbox.ErrInvalidMessage
}

// CheckInboxArgs validates what every store's inbox Handle is given (a consumer name, a message
// with an ID, a handler: fnIsNil reports a nil one), naming the first problem. Stores wrap the
// error with their prefix.
func CheckInboxArgs(consumer string, msg *outbox.Message, fnIsNil bool) error {
	if p := inboxTextProblem(consumer, MaxInboxConsumerLength); p != "" {
		return InvalidArgument("consumer", p)
	}
	if msg == nil {
		return &inboxMessageError{"message", "is nil"}
	}
	if p := inboxTextProblem(msg.ID, MaxInboxIDLength); p != "" {
		return &inboxMessageError{"message id", p}
	}
	if fnIsNil {
		return InvalidArgument("fn", "is nil")
	}
	return nil
}

// inboxTextProblem says what makes s unusable as a consumer name or message ID, or "".
func inboxTextProblem(s string, limit int) string {
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

// CheckInboxRetention validates the arguments of an inbox's DeleteOlderThan: a positive age, at
// least the resolution of the store's processed_at (0: any), and a positive limit.
func CheckInboxRetention(olderThan time.Duration, limit int, resolution time.Duration) error {
	switch {
	case olderThan <= 0:
		return InvalidArgument("olderThan", fmt.Sprintf("%v is not positive", olderThan))
	case olderThan < resolution:
		return InvalidArgument("olderThan", fmt.Sprintf("%v is below %v, the resolution of processed_at", olderThan, resolution))
	case limit <= 0:
		return InvalidArgument("limit", fmt.Sprintf("%d is not positive", limit))
	}
	return nil
}

// PruneInBatches calls deleteBatch with batch until it deletes fewer than batch or fails, and
// returns how many it deleted in all: an inbox's Prune over its DeleteOlderThan.
func PruneInBatches(ctx context.Context, batch int, deleteBatch func(ctx context.Context, limit int) (int, error)) (int, error) {
	total := 0
	for {
		n, err := deleteBatch(ctx, batch)
		total += n
		if err != nil || n < batch {
			return total, err
		}
	}
}
