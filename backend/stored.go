package backend

import (
	"github.com/google/uuid"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/internal/text"
)

// The Store contract's edge cases, decided once here so that every store behaves alike.

// MaxErrorText bounds the error text a store keeps for a failed message, in bytes.
const MaxErrorText = text.MaxError

// StorableText makes a failure's text storable in any store: valid UTF-8 (invalid bytes become
// U+FFFD), no NUL bytes (PostgreSQL text cannot hold them), and at most MaxErrorText bytes, cut
// on a rune boundary. The relay applies it to every Failure; stores apply it again to what they
// are given, so a Failure made by hand cannot break a write either.
func StorableText(s string) string { return text.Storable(s) }

// ValidateStored reports what makes a message read back from a store corrupt: its ID is not a
// UUID, or it breaks any rule Validate enforces at write time except the payload size limit
// (which may have been larger when it was written). A store dead-letters such a message with
// CorruptFailure instead of returning it from Claim, so it can never stall or crash the relay.
func ValidateStored(m *outbox.Message) error {
	if m == nil {
		return &outbox.FieldError{Field: "message", Problem: "is nil"}
	}
	if m.ID == "" {
		return &outbox.FieldError{Field: "id", Problem: "is empty"}
	}
	return m.Validate(1 << 40)
}

// CorruptFailure is the Failure that dead-letters a stored message ValidateStored rejected;
// backend names the store ("postgres") in the reason.
func CorruptFailure(backend, id string, problem error) outbox.Failure {
	return outbox.Failure{ID: id, Error: StorableText(backend + ": corrupt message: " + problem.Error()), Dead: true}
}

// SettleableIDs returns the IDs that can name a stored message (UUIDs), in order. Stores ignore
// the others in Ack and Nack, as they ignore unknown IDs, so one bad ID cannot fail a batch.
func SettleableIDs(ids []string) []string {
	out := ids[:0:0]
	for _, id := range ids {
		if _, err := uuid.Parse(id); err == nil {
			out = append(out, id)
		}
	}
	return out
}

// CheckToken is what Ack and Nack check first: a claim always has a token, so an empty one is a
// caller's mistake, reported as outbox.ErrInvalidArgument rather than silently settling nothing.
func CheckToken(token string) error {
	if token == "" {
		return InvalidArgument("token", "is empty")
	}
	return nil
}

// ClaimSieve decides, for a store's Claim, what becomes of each claimed message read back, in
// seq order: return it, dead-letter it (ValidateStored rejected it), or, in an ordered claim,
// hand it back because a message of its key before it in the same claim was corrupt (that
// message is now dead and blocks its key).
type ClaimSieve struct {
	Backend string // names the store in the reasons, e.g. "postgres"
	Ordered bool
	stopped map[string]bool
}

// Sort reports ok when m is returned; otherwise the Failure to settle it with under the claim's
// token. corrupt is what ValidateStored (or the store's decoding) found wrong, or nil.
func (s *ClaimSieve) Sort(m *outbox.Message, corrupt error) (f outbox.Failure, ok bool) {
	keyed := s.Ordered && m.Key != ""
	switch {
	case corrupt != nil:
		if keyed {
			if s.stopped == nil {
				s.stopped = map[string]bool{}
			}
			s.stopped[m.Key] = true
		}
		return CorruptFailure(s.Backend, m.ID, corrupt), false
	case keyed && s.stopped[m.Key]:
		return outbox.Failure{ID: m.ID, Release: true}, false
	}
	return outbox.Failure{}, true
}
