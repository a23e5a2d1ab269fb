package sqs

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/txoutbox/outbox"
)

// Transport publishes outbox messages to Amazon SQS. It is safe for concurrent use.
//
// It never retries: the SDK's retryer is switched off on every call it makes, including calls
// through a Client you passed, because retrying belongs to the relay's backoff and
// middleware/retry. A failed call returns at once with an error saying whether a retry can help.
type Transport struct {
	cfg    Config
	client *awssqs.Client
	httpTr *http.Transport // the HTTP transport New built, closed by Close; nil for your own client
	router *router
	sem    chan struct{} // SendMessageBatch calls in flight
	closed atomic.Bool
}

// New validates cfg and returns a Transport. It builds an SQS client unless cfg has one; with
// no static keys that client uses the default AWS credential chain, whose credentials are
// fetched on the first publish. New sends no request: queue names are resolved on first use.
func New(ctx context.Context, cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	client, httpTr, err := newClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Transport{
		cfg:    cfg,
		client: client,
		httpTr: httpTr,
		router: newRouter(client, cfg),
		sem:    make(chan struct{}, cfg.Concurrency),
	}, nil
}

// Client returns the SQS client the transport sends with.
func (t *Transport) Client() *awssqs.Client { return t.client }

// String describes the transport without secrets.
func (t *Transport) String() string { return fmt.Sprintf("sqs.Transport(%v)", t.cfg) }

// Close makes further publishes fail with outbox.ErrClosed and closes the idle connections of the
// HTTP client New built. It does not wait for publishes in flight, and leaves a Client or
// AWSConfig you passed alone.
func (t *Transport) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	if t.httpTr != nil {
		t.httpTr.CloseIdleConnections()
	}
	return nil
}

// Publish sends msgs with SendMessageBatch: up to 10 messages and MaxBatchBytes per call, up to
// Concurrency calls in flight. It returns nil when SQS accepted every message; a
// *outbox.BatchError naming the messages that failed when some did; or, when every message failed
// for one reason (a missing queue, an unreachable endpoint), that error. Errors that blame the
// destination (a missing queue, refused credentials, throttling, server errors, no answer) are
// marked outbox.Unavailable, so the relay pauses instead of charging attempts; errors that blame a
// message and that no retry can fix are marked outbox.Permanent: a message too large, or one SQS
// rejects as its sender's fault. A call refused because of one bad entry is sent again one entry
// per call, so only that message fails. See errors.go for the codes.
//
// On a FIFO queue, messages with the same Key are sent in the order given, and once one of them
// fails the later ones with that Key are held back (retryable failures), so a retry never
// overtakes. Messages without a Key promise no order and never wait.
func (t *Transport) Publish(ctx context.Context, msgs []*outbox.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if t.closed.Load() {
		return fmt.Errorf("sqs: publish: %w", outbox.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqs: publish: %w", err)
	}
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("sqs: publish: message %d is nil", i)
		}
	}
	out := newOutcome(msgs)

	byDest := map[string][]int{}
	var order []string // destinations in first-seen order, so batches follow the input order
	for i, m := range msgs {
		dest, err := t.router.destination(m)
		if err != nil {
			out.fail(i, err, false)
			continue
		}
		if _, seen := byDest[dest]; !seen {
			order = append(order, dest)
		}
		byDest[dest] = append(byDest[dest], i)
	}

	var batches []*batch
	for _, dest := range order {
		idxs := byDest[dest]
		q, err := t.router.resolve(ctx, dest)
		if err != nil {
			for _, i := range idxs {
				out.fail(i, err, true)
			}
			continue
		}
		batches = append(batches, t.pack(q, msgs, idxs, out)...)
	}
	t.sendAll(ctx, batches, out)
	return out.err()
}

// outcome collects what happened to each message of one Publish call. Each index is written
// by one goroutine only.
type outcome struct {
	msgs []*outbox.Message
	errs []error
	call []bool // the error came from a whole failed call, not from the message itself
}

func newOutcome(msgs []*outbox.Message) *outcome {
	return &outcome{msgs: msgs, errs: make([]error, len(msgs)), call: make([]bool, len(msgs))}
}

func (o *outcome) fail(i int, err error, wholeCall bool) { o.errs[i], o.call[i] = err, wholeCall }

// err returns nil, the error every message failed with, or a BatchError.
func (o *outcome) err() error {
	var first error
	failed, calls, alike := 0, 0, true
	for i, err := range o.errs {
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		} else if alike && err.Error() != first.Error() {
			alike = false
		}
		failed++
		if o.call[i] {
			calls++
		}
	}
	switch {
	case failed == 0:
		return nil
	case failed == len(o.errs) && calls == failed && alike:
		// Every message failed because whole calls failed the same way (a missing queue, an
		// unreachable endpoint, a cancelled context): one error says it best.
		return first
	}
	be := outbox.NewBatchError()
	for i, err := range o.errs {
		if err != nil {
			be.Add(o.msgs[i].ID, err)
		}
	}
	return be
}

// KeepsKeyOrder implements outbox.KeyOrderer. It is true when every queue the transport can send
// to is a FIFO queue (a name or URL ending in .fifo) and no Route function can pick another:
// then Publish sends each Key's messages in the order given (one SendMessageBatch after another
// for a Key spread over several calls) and, once one fails, holds back the later ones of that Key
// in the same Publish. On such queues a relay in ordered mode sends a key's run in one Publish,
// up to ten messages per call. Standard queues keep no order, so this is false for them.
//
// What SQS documents for FIFO queues is the order of messages as they are accepted. Within one
// SendMessageBatch call it does not say whether an entry can fail while a later entry of the same
// group succeeds; the entries that fail per entry are refused before they are queued (sizes and
// attributes are checked here first), which leaves throttling and internal errors. Should that
// happen, the later message is already queued: the relay publishes the failed one again after it,
// and its deduplication ID (the message ID) drops the later copy within five minutes.
func (t *Transport) KeepsKeyOrder() bool {
	if t.cfg.Route != nil || (t.cfg.QueueURL != "" && !isFIFO(t.cfg.QueueURL)) {
		return false
	}
	for _, q := range t.cfg.Routes {
		if !isFIFO(q) {
			return false
		}
	}
	return true
}
