package outbox

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

var (
	// ErrClosed is returned by a store or transport used after Close.
	ErrClosed = errors.New("outbox: closed")
	// ErrInvalidMessage matches (with errors.Is) every *FieldError.
	ErrInvalidMessage = errors.New("outbox: invalid message")
	// ErrInvalidConfig matches (with errors.Is) every *ConfigError.
	ErrInvalidConfig = errors.New("outbox: invalid config")
	// ErrInvalidArgument matches (with errors.Is) every error made by InvalidArgument: a bad
	// argument to a call (a nil transaction, an empty token), as opposed to a bad Config field.
	ErrInvalidArgument = errors.New("outbox: invalid argument")
	// ErrRunning is returned by Start on a relay that is already running.
	ErrRunning = errors.New("outbox: relay already running")
	// ErrSchema matches (with errors.Is) every *SchemaError.
	ErrSchema = errors.New("outbox: schema missing or not the outbox's")
)

// SchemaError says that a store's table (or collection) is missing, or is not laid out as the
// outbox's, and what creates or upgrades it. Waiting does not fix it, so the relay's Start
// returns it instead of retrying.
type SchemaError struct {
	Store   string // e.g. "postgres"
	Table   string // the table as the store names it, e.g. public.outbox
	Problem string // e.g. "does not exist", "has no column status"
}

func (e *SchemaError) Error() string {
	fix := "create it with `outbox migrate` or the store's EnsureSchema (SchemaSQL prints the DDL)"
	if e.Problem != SchemaMissing {
		fix = "it is another table of that name: give the outbox its own (Config.Table, --table)"
	}
	return e.Store + ": table " + e.Table + " " + e.Problem + ": " + fix
}

// SchemaMissing is the Problem of a SchemaError whose table does not exist.
const SchemaMissing = "does not exist"

// Is reports whether target is ErrSchema.
func (e *SchemaError) Is(target error) bool { return target == ErrSchema }

// FieldError names the field of a message that cannot be stored and why.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return "invalid message: " + e.Field + " " + e.Problem }

// Is reports whether target is ErrInvalidMessage.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidMessage }

// ConfigError names the config field that is wrong and why.
type ConfigError struct {
	Component string // e.g. "relay", "postgres"
	Field     string
	Problem   string
}

func (e *ConfigError) Error() string {
	return e.Component + ": invalid config: " + e.Field + " " + e.Problem
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// ArgumentError names the argument of a call that is wrong and why.
type ArgumentError struct {
	Arg     string
	Problem string
}

func invalidArgument(arg, problem string) error { return &ArgumentError{Arg: arg, Problem: problem} }

func (e *ArgumentError) Error() string { return "invalid argument: " + e.Arg + " " + e.Problem }

// Is reports whether target is ErrInvalidArgument.
func (e *ArgumentError) Is(target error) bool { return target == ErrInvalidArgument }

// BatchError reports a partial failure of Transport.Publish: the messages it names failed, every
// other message of the batch was published. The relay acknowledges the others and records a
// failure for each named message; a failure wrapped with Permanent dead-letters its message.
type BatchError struct {
	// Failed maps message ID to why it failed.
	Failed map[string]error
}

// NewBatchError returns an empty BatchError; add failures with Add.
func NewBatchError() *BatchError { return &BatchError{Failed: map[string]error{}} }

// Add records that the message with this ID failed.
func (e *BatchError) Add(id string, err error) { e.Failed[id] = err }

// ErrOrNil returns e when it names a failure, and nil otherwise.
func (e *BatchError) ErrOrNil() error {
	if e == nil || len(e.Failed) == 0 {
		return nil
	}
	return e
}

func (e *BatchError) Error() string {
	ids := slices.Sorted(maps.Keys(e.Failed))
	var b strings.Builder
	fmt.Fprintf(&b, "%d message(s) failed", len(ids))
	for i, id := range ids {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(ids)-i)
			break
		}
		fmt.Fprintf(&b, "; %s: %v", id, e.Failed[id])
	}
	return b.String()
}

// Unwrap exposes the per-message errors to errors.Is and errors.As.
func (e *BatchError) Unwrap() []error {
	errs := make([]error, 0, len(e.Failed))
	for _, err := range e.Failed {
		errs = append(errs, err)
	}
	return errs
}

// PublishError carries the context of a failed publish: which transport, which message type.
type PublishError struct {
	Transport string
	Type      string
	Err       error
}

func (e *PublishError) Error() string {
	if e.Type == "" {
		return e.Transport + ": publish: " + e.Err.Error()
	}
	return e.Transport + ": publish " + e.Type + ": " + e.Err.Error()
}
func (e *PublishError) Unwrap() error { return e.Err }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that no retry can fix (an oversized message, a queue that does not
// exist, a body the broker rejects). The relay dead-letters the message at once, and the retry
// middleware does not retry it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with Permanent. For a
// BatchError it is true only when every failure is permanent.
func IsPermanent(err error) bool {
	var be *BatchError
	if errors.As(err, &be) && len(be.Failed) > 0 {
		for _, e := range be.Failed {
			if !IsPermanent(e) {
				return false
			}
		}
		return true
	}
	var p *permanentError
	return errors.As(err, &p)
}

type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// Unavailable marks err as an outage of the destination rather than a fault of any message: the
// broker is unreachable, throttling, failing with server errors, refusing the credentials, or
// the queue or topic is briefly missing. A Publish that fails as a whole (or for every message)
// with such an error pauses the relay: it charges no attempt, releases the messages, and probes
// the transport with a small batch until it publishes again. Unavailable(nil) is nil.
//
// Mark only what concerns the destination. An error that concerns one message belongs in a
// *BatchError entry (wrapped with Permanent when no retry can fix it); an unmarked error of a
// whole call is charged to every message of the batch as an ordinary failed attempt.
func Unavailable(err error) error {
	if err == nil {
		return nil
	}
	return &unavailableError{err: err}
}

// IsUnavailable reports whether err, or an error it wraps, was marked with Unavailable. For a
// BatchError it is true only when every failure is. Permanent wins over Unavailable.
func IsUnavailable(err error) bool {
	if err == nil || IsPermanent(err) {
		return false
	}
	var be *BatchError
	if errors.As(err, &be) && len(be.Failed) > 0 {
		for _, e := range be.Failed {
			if !IsUnavailable(e) {
				return false
			}
		}
		return true
	}
	var u *unavailableError
	return errors.As(err, &u)
}
