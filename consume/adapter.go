package consume

import (
	"context"
	"errors"
	"time"

	"github.com/txoutbox/outbox"
)

// Handler handles one message. It returns nil when the message's effect is done (its delivery
// is then acked) and an error to have it delivered again after a backoff. It must be safe for
// concurrent use when Config.Concurrency is above 1. A panic is recovered and counts as an
// error.
type Handler func(ctx context.Context, m *outbox.Message) error

// ErrStopped is (or wraps, for a handler cancelled by Stop) the cause the runtime gives Nack
// for a delivery it hands back because the consumer stops: an adapter that can makes it
// visible again at once (errors.Is(cause, ErrStopped)).
var ErrStopped = errors.New("consume: consumer stopped")

// Adapter is what a broker supplies to the runtime. The package doc states the contract: Open
// once, Receive from Config.Pollers goroutines at once, Close once after every delivery was
// settled.
type Adapter interface {
	// Open connects, before the first Receive. ctx bounds only the connecting.
	Open(ctx context.Context) error
	// Receive returns 1 to max deliveries, blocking until there is one or ctx ends.
	Receive(ctx context.Context, max int) ([]Delivery, error)
	// Close releases the connection; the broker redelivers what was not acked.
	Close(ctx context.Context) error
}

// Settler settles one delivery. Exactly one of its methods is called, once.
type Settler interface {
	// Ack removes the delivery: its handler returned nil.
	Ack(ctx context.Context) error
	// Nack gives the delivery back, to be delivered again not before delay where the broker
	// can wait. cause says why: the handler's error, or ErrStopped.
	Nack(ctx context.Context, delay time.Duration, cause error) error
	// Reject sends the delivery to the broker's dead-letter mechanism (or leaves it to the
	// broker's redrive policy): it cannot be decoded, or its deliveries are exhausted.
	Reject(ctx context.Context, cause error) error
}

// Extender is implemented by a Settler whose broker hides a delivery for a while (SQS
// visibility, JetStream AckWait): Extend pushes that deadline back while the handler runs.
type Extender interface {
	Extend(ctx context.Context) error
}

// Delivery is one message as the broker handed it over.
type Delivery struct {
	// Body is the message's body: an envelope, or with Config.RawPayload the bare payload.
	Body []byte
	// Headers are the broker's headers or attributes that the message carries, one value per
	// name, already filtered of the broker's own (Nats-*, ...). outbox.id and outbox.type give
	// the ID and Type in RawPayload mode, outbox.key the Key; the rest become the message's
	// Headers.
	Headers map[string]string
	// Message, when set, is the message already decoded (the memory transport hands its
	// messages over as they are); Body and Headers are then ignored. The handler gets a copy.
	Message *outbox.Message
	// Err, when set, says the adapter could not read the delivery (an attribute that does not
	// parse): it counts as malformed and is rejected.
	Err error
	// Attempt is the broker's delivery count, 1 for the first delivery; 0 when the broker does
	// not say. It picks the backoff delay and is checked against Config.MaxDeliveries.
	Attempt int
	// Group puts the delivery in an ordered run with the others of its group (see Order in
	// the package doc). Empty: the delivery runs on its own.
	Group string
	// Ref names the delivery in logs (the broker's message ID, a partition/offset).
	Ref string
	// Context, when set, also bounds the handler: the memory transport's publisher's context.
	Context context.Context
	// Settler settles the delivery. Required.
	Settler Settler
}
