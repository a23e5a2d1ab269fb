package outbox

import (
	"context"
	"time"
)

// Store is the relay's side of an outbox backend. The write side is not part of it: each backend
// offers Add and Execute with its own native transaction type.
//
// Implementations are safe for concurrent use, and so are several stores (in several processes)
// over the same table or collection: that is how relays share work.
type Store interface {
	// Claim leases up to req.Limit due messages until now+req.Lease, oldest first, and records
	// req.Token on each. A message is due when it is pending, its retry time has come and no
	// valid lease holds it. While a lease is valid no other claimer receives the message. Claims
	// never use an offset cursor: a message that commits late is still found. "Now" is the
	// store's clock.
	//
	// With req.Ordered, messages with a non-empty Key come out in runs: a key's run starts at its
	// head (its oldest undelivered message: pending, leased or dead), which must be due, and goes
	// on through the key's next messages in order while they are due, so a claim never returns a
	// message whose predecessor of the same Key is undelivered and not in the same claim. The
	// messages of a run are returned in order. Unkeyed messages are not ordered. Which keys an
	// ordered claim takes is the store's choice (oldest heads first, or keys in turns, as
	// PostgreSQL does so that a few long runs fill a claim), as long as every key with a due
	// head gets its turn: no key starves.
	//
	// A stored message that cannot be turned back into a valid Message (see
	// backend.ValidateStored) is moved to dead with the reason instead of being returned.
	Claim(ctx context.Context, req ClaimRequest) ([]*Message, error)
	// Ack marks messages delivered (or deletes them, per the store's retention mode) and returns
	// how many it settled. Only the claim that leased a message can ack it: an ID whose lease
	// does not carry token (an earlier claim whose lease expired, even by the same relay) is left
	// alone and not counted, and so is an unknown ID.
	Ack(ctx context.Context, token string, ids []string) (int, error)
	// Nack records failed publishes, releases their leases and returns how many it settled;
	// like Ack it only applies to messages whose lease carries token. For each Failure: with
	// Dead, the message moves to the dead-letter state; with Release, it is due again after Delay
	// with its attempts and last error unchanged; otherwise attempts+1, the error text is kept
	// as its last error, and it is due again after Delay. Delay is measured on the store's clock.
	Nack(ctx context.Context, token string, failures []Failure) (int, error)
}

// ClaimRequest asks a Store for messages.
type ClaimRequest struct {
	// Token identifies this one claim. The store records it as the lease holder of every
	// message it returns, and Ack and Nack count only with it. The relay makes a new token for
	// every claim, beginning with its Owner so that people reading the store see who holds what.
	Token string
	// Limit bounds how many messages the claim returns.
	Limit int
	// Lease is how long the messages stay reserved to this claim.
	Lease time.Duration
	// Ordered asks for per-key runs (see Store.Claim).
	Ordered bool
}

// Validate names the first invalid field; stores call it at the top of Claim.
func (r ClaimRequest) Validate() error {
	switch {
	case r.Token == "":
		return invalidArgument("claim request Token", "is empty")
	case r.Limit <= 0:
		return invalidArgument("claim request Limit", "must be positive")
	case r.Lease <= 0:
		return invalidArgument("claim request Lease", "must be positive")
	}
	return nil
}

// Failure is one message that was not published, as the relay reports it to Store.Nack.
type Failure struct {
	ID string
	// Error is the reason, kept as the message's last error (already StorableText).
	Error string
	// Delay is how long from now, on the store's clock, until the message is due again.
	// Ignored when Dead.
	Delay time.Duration
	// Dead moves the message to the dead-letter state: it is never claimed again unless requeued.
	Dead bool
	// Release returns the message without counting an attempt or changing its last error: the
	// failure was not the message's own (the broker was unavailable, the relay was stopping, or
	// an earlier message of its key failed first).
	Release bool
}

// SchemaChecker is implemented by stores that can tell whether their table exists with the
// outbox's layout. CheckSchema returns an error matching ErrSchema when it does not, another
// error when the store cannot be asked (it is unreachable), nil when all is well. The relay's
// Start calls it, briefly, and fails on ErrSchema: a missing table is a deployment error that
// no retry fixes.
type SchemaChecker interface {
	CheckSchema(ctx context.Context) error
}

// Notifier is implemented by stores that can wake the relay when messages are committed
// (PostgreSQL LISTEN/NOTIFY, MongoDB change streams, an in-process signal). The relay keeps
// polling as the correctness fallback, so a lost signal only delays delivery.
type Notifier interface {
	// Listen returns a channel that receives a value whenever new messages may have been
	// committed; signals coalesce. The channel is closed when ctx ends. A store that cannot
	// listen (no change streams on this server) returns an error and the relay polls.
	Listen(ctx context.Context) (<-chan struct{}, error)
}

// Status is the state of a stored message.
type Status string

// The states of a message: the origin package's PENDING, PROCESSED and FAILED.
const (
	StatusPending   Status = "pending"
	StatusDelivered Status = "delivered"
	StatusDead      Status = "dead"
)

// Counts is what Inspector.Counts reports.
type Counts struct {
	Pending   int64
	Delivered int64 // zero when the store deletes on ack
	Dead      int64
	// OldestPending is the creation time of the oldest pending message; zero when none.
	OldestPending time.Time
}

// DeadLetter is a dead message with why it died.
type DeadLetter struct {
	Message
	LastError string
	DiedAt    time.Time
}

// DeadFilter selects dead messages. Empty fields match everything.
type DeadFilter struct {
	IDs   []string
	Type  string
	Key   string
	Limit int // list: default 100; requeue/purge: no limit
}

// Inspector is implemented by stores that can report on and repair their contents.
type Inspector interface {
	Counts(ctx context.Context) (Counts, error)
	// ListDead returns dead messages, oldest first.
	ListDead(ctx context.Context, f DeadFilter) ([]DeadLetter, error)
	// Requeue makes dead messages pending again (due now, attempts reset) and returns how many.
	Requeue(ctx context.Context, f DeadFilter) (int, error)
	// Purge deletes dead messages and returns how many.
	Purge(ctx context.Context, f DeadFilter) (int, error)
}

// Retention is implemented by stores that keep delivered messages (the origin package's status
// tracking). DeleteDelivered removes at most limit messages delivered more than olderThan ago,
// by the store's clock, and returns how many; callers loop until it returns fewer than limit,
// so no single statement deletes millions of rows.
type Retention interface {
	DeleteDelivered(ctx context.Context, olderThan time.Duration, limit int) (int, error)
}
