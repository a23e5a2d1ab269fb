package outbox

import (
	"context"
	"errors"
)

// Consumer is the receiving side of a broker: it hands each message the relay published to a
// handler. Every transport's NewConsumer returns one, built on the runtime in package consume,
// and outboxfx.ConsumerModule runs them with the application.
//
// Start must not block on messages: it connects, starts the consumer's goroutines and returns.
// Stop stops receiving, waits for the handlers in flight until its context ends (plus a short
// grace), and gives every message it did not finish back to the broker, which delivers it again.
// A consumer runs once: Start on a consumer started (or stopped) before returns
// ErrConsumerStarted.
type Consumer interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// ErrConsumerStarted is returned by a Consumer's Start when it was started or stopped before;
// make a new consumer to consume again.
var ErrConsumerStarted = errors.New("consumer: already started")
