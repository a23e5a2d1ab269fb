package outbox

import "context"

// Transport publishes messages to a broker.
//
// Publish returns nil when every message was accepted by the broker; a *BatchError naming the
// messages that failed when only some did (every other one was published); or any other error
// when the whole batch failed. Mark errors no retry can fix with Permanent.
//
// A Transport must not retry: retrying is the job of middleware (middleware/retry) and of the
// relay's backoff, so one policy governs it. It must honour ctx and be safe for concurrent use.
type Transport interface {
	Publish(ctx context.Context, msgs []*Message) error
}

// TransportFunc adapts a function to Transport.
type TransportFunc func(ctx context.Context, msgs []*Message) error

// Publish calls f.
func (f TransportFunc) Publish(ctx context.Context, msgs []*Message) error { return f(ctx, msgs) }

// Handler is one step of the publish path: the transport at the end, middleware before it. Its
// result means what Transport.Publish's does.
type Handler func(ctx context.Context, msgs []*Message) error

// Middleware wraps a Handler with behaviour such as retry, dedup, tracing, logging or metrics.
type Middleware func(next Handler) Handler

// Chain builds the publish path: the first middleware is the outermost, so it sees a batch
// first and the transport's result last.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		if mws[i] != nil {
			h = mws[i](h)
		}
	}
	return h
}

// KeyOrderer is implemented by transports that keep per-key order within one Publish call: the
// messages of one Key reach consumers in the order of the slice, and after the first failed
// message of a Key no later message of that Key in the same call is published (each is reported
// failed in the *BatchError). In ordered mode the relay then sends a key's consecutive messages
// in one call; for any other transport it sends them in successive calls, one message per key
// per call, which keeps order at the cost of round trips.
//
// KeepsKeyOrder may depend on configuration (an SQS FIFO queue keeps order, a standard queue
// does not); it is asked once, when the relay is made. Middleware must pass a batch on in
// order, or a subset of it in order (as middleware/retry does).
type KeyOrderer interface {
	KeepsKeyOrder() bool
}
