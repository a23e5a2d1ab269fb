package core

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
	// Claim leases up to req.Limit due messages to req.Owner until now+req.Lease, oldest first.
	// A message is due when it is pending, its retry time has come and no valid lease holds it.
	// While a lease is valid no other claimer receives the message. Claims never use an offset
	// cursor: a message that commits late is still found. With req.Ordered, a message is only
	// returned when no earlier message with the same non-empty Key is still undelivered
	// (pending, leased or dead), and at most one message per Key is returned.
	Claim(ctx context.Context, req ClaimRequest) ([]*Message, error)
	// Ack marks messages delivered (or deletes them, per the store's retention mode). Only the
	// current lease holder's ack counts: an ID whose lease owner is not owner is left alone.
	// Unknown IDs are ignored.
	Ack(ctx context.Context, owner string, ids []string) error
	// Nack records failed publishes: attempts+1, the error text, and either the time the message
	// is due again or, with Dead, the dead-letter state. The lease is released. Like Ack, it only
	// applies to messages whose lease owner is owner.
	Nack(ctx context.Context, owner string, failures []Failure) error
}

// ClaimRequest asks a Store for messages.
type ClaimRequest struct {
	Owner   string
	Limit   int
	Lease   time.Duration
	Ordered bool
}

// Validate names the first invalid field; stores call it at the top of Claim.
func (r ClaimRequest) Validate() error {
	switch {
	case r.Owner == "":
		return &ConfigError{Component: "claim", Field: "Owner", Problem: "is empty"}
	case r.Limit <= 0:
		return &ConfigError{Component: "claim", Field: "Limit", Problem: "must be positive"}
	case r.Lease <= 0:
		return &ConfigError{Component: "claim", Field: "Lease", Problem: "must be positive"}
	}
	return nil
}

// Failure is one failed publish, as the relay reports it to Store.Nack.
type Failure struct {
	ID string
	// Error is the reason, kept as the message's last error.
	Error string
	// RetryAt is when the message is due again; ignored when Dead.
	RetryAt time.Time
	// Dead moves the message to the dead-letter state: it is never claimed again unless requeued.
	Dead bool
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
// tracking). DeleteDelivered removes at most limit delivered messages delivered before cutoff
// and returns how many; callers loop until it returns fewer than limit, so no single statement
// deletes millions of rows.
type Retention interface {
	DeleteDelivered(ctx context.Context, cutoff time.Time, limit int) (int, error)
}
