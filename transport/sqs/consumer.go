package sqs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
)

// ErrConsumerStarted is returned by Start on a consumer that was started before: a consumer
// runs once; make a new one to consume again.
var ErrConsumerStarted = errors.New("sqs consumer: already started")

// Consumer receives the messages of one SQS queue and hands each to a handler, Concurrency at a
// time. A message is deleted when its handler returns nil. When the handler fails (returns an
// error, panics, or its context ends) the message is left in the queue: it becomes visible
// again when its visibility timeout ends and SQS delivers it again, until the queue's redrive
// policy (maxReceiveCount) moves it to the dead-letter queue. The consumer keeps no retry
// policy of its own, so the queue's one governs; configure a redrive policy on every queue.
//
// Delivery is at least once: a handler may see a message again after a crash, a failed delete,
// or a visibility timeout that expired. Wrap the handler's work in an inbox's Handle (packages
// store/postgres/inbox, store/sqlite/inbox, store/mongo/inbox) for an exactly-once effect.
//
// While a handler runs, its message's visibility is extended every ExtendInterval. On FIFO
// queues the messages of one group received together are handled one after the other, and the
// first failure leaves the rest of the group for SQS to redeliver in order.
//
// The handler sees the message as the Transport sent it: ID, Type, Payload, Result and CreatedAt
// from the envelope, Key from outbox.key, every other String attribute in Headers (traceparent
// and tracestate among them, so a handler wrapper can continue the writer's trace).
type Consumer struct {
	cfg    ConsumerConfig
	client *awssqs.Client
	httpTr *http.Transport
	router *router
	handle func(ctx context.Context, m *outbox.Message) error
	log    *zap.Logger
	slots  chan struct{} // one per handler running or reserved by a poller
	// deletes carries the receipts of handled messages to the deleter, which batches them.
	deletes chan deletion

	mu        sync.Mutex
	started   bool
	queue     queue
	stopPoll  context.CancelFunc
	stopWork  context.CancelFunc
	done      chan struct{} // closed when every poller and handler has returned
	wg        sync.WaitGroup
	stats     consumerCounters
	closeOnce sync.Once
}

type consumerCounters struct {
	received, handled, failed, malformed, deleted, deleteErrors, extended, extendErrors, receiveErrors, inFlight atomic.Int64
}

// ConsumerStats is a snapshot of a consumer's counters since it started.
type ConsumerStats struct {
	// Received counts messages received from SQS (redeliveries included).
	Received int64
	// Handled counts handler calls that returned nil.
	Handled int64
	// Failed counts handler calls that returned an error, panicked or timed out; their
	// messages were left to redelivery and the redrive policy.
	Failed int64
	// Malformed counts messages whose body or attributes could not be decoded; they are left
	// to the redrive policy too, so they end in the dead-letter queue.
	Malformed int64
	// Deleted counts messages deleted after their handler succeeded; DeleteErrors the deletes
	// that failed (those messages are delivered again).
	Deleted, DeleteErrors int64
	// Extended counts visibility extensions; ExtendErrors the extensions that failed.
	Extended, ExtendErrors int64
	// ReceiveErrors counts failed ReceiveMessage calls.
	ReceiveErrors int64
	// InFlight is how many handlers run now.
	InFlight int64
}

// NewConsumer validates cfg and returns a consumer of cfg.QueueURL that calls handle for each
// message. It sends no request; Start (or Run) begins consuming. handle must be safe for
// concurrent use when Concurrency is above 1.
func NewConsumer(ctx context.Context, cfg ConsumerConfig, handle func(ctx context.Context, m *outbox.Message) error) (*Consumer, error) {
	if handle == nil {
		return nil, &outbox.ConfigError{Component: "sqs consumer", Field: "handle", Problem: "is nil"}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tc := cfg.transportConfig().withDefaults()
	client, httpTr, err := newClient(ctx, tc)
	if err != nil {
		return nil, err
	}
	return &Consumer{
		cfg: cfg, client: client, httpTr: httpTr, router: newRouter(client, tc), handle: handle,
		log:     cfg.Logger.With(zap.String("component", "sqs consumer")),
		slots:   make(chan struct{}, cfg.Concurrency),
		deletes: make(chan deletion),
		done:    make(chan struct{}),
	}, nil
}

// Client returns the SQS client the consumer receives with.
func (c *Consumer) Client() *awssqs.Client { return c.client }

// Start resolves the queue and starts the pollers in the background; it does not block on
// messages. ctx bounds only the queue lookup: the consumer runs until Stop.
func (c *Consumer) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return ErrConsumerStarted
	}
	q, err := c.router.resolve(ctx, c.cfg.QueueURL)
	if err != nil {
		return fmt.Errorf("sqs consumer: start: %w", err)
	}
	c.started, c.queue = true, q
	pollCtx, stopPoll := context.WithCancel(context.Background())
	workCtx, stopWork := context.WithCancel(context.Background())
	c.stopPoll, c.stopWork = stopPoll, stopWork
	for range c.cfg.Pollers {
		c.wg.Add(1)
		go c.poll(pollCtx, workCtx)
	}
	deleterDone := make(chan struct{})
	go c.deleter(deleterDone)
	go func() {
		c.wg.Wait()
		close(c.deletes) // every handler has returned: no delete comes any more
		<-deleterDone
		c.release()
		close(c.done)
	}()
	c.log.Info("consuming", zap.String("queue", q.url), zap.Int("concurrency", c.cfg.Concurrency), zap.Int("pollers", c.cfg.Pollers))
	return nil
}

// Stop stops receiving and waits for the handlers in flight to finish and their messages to be
// deleted. When ctx ends first, it cancels the handlers' contexts (their messages are
// redelivered later) and returns ctx's error without waiting further; a later Stop waits for
// them again. Stop on a consumer never started returns nil.
func (c *Consumer) Stop(ctx context.Context) error {
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if !started {
		c.release()
		return nil
	}
	c.stopPoll()
	select {
	case <-c.done:
		c.stopWork() // nothing runs under it any more; release the context
		return nil
	case <-ctx.Done():
		c.stopWork()
		return fmt.Errorf("sqs consumer: stop: handlers still running: %w", ctx.Err())
	}
}

// Run starts the consumer and consumes until ctx ends, then stops it, waiting up to
// DefaultStopTimeout for the handlers in flight. It returns nil after a clean stop.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), DefaultStopTimeout)
	defer cancel()
	return c.Stop(stopCtx)
}

// Stats returns a snapshot of the counters.
func (c *Consumer) Stats() ConsumerStats {
	s := &c.stats
	return ConsumerStats{
		Received: s.received.Load(), Handled: s.handled.Load(), Failed: s.failed.Load(), Malformed: s.malformed.Load(),
		Deleted: s.deleted.Load(), DeleteErrors: s.deleteErrors.Load(), Extended: s.extended.Load(),
		ExtendErrors: s.extendErrors.Load(), ReceiveErrors: s.receiveErrors.Load(), InFlight: s.inFlight.Load(),
	}
}

// release closes the idle connections of the HTTP client NewConsumer built.
func (c *Consumer) release() {
	c.closeOnce.Do(func() {
		if c.httpTr != nil {
			c.httpTr.CloseIdleConnections()
		}
	})
}

// poll receives messages while pollCtx lasts, never more than there are free handler slots.
func (c *Consumer) poll(pollCtx, workCtx context.Context) {
	defer c.wg.Done()
	backoff := time.Duration(0)
	for {
		select {
		case c.slots <- struct{}{}:
		case <-pollCtx.Done():
			return
		}
		n := 1
	reserve:
		for n < c.cfg.ReceiveBatch {
			select {
			case c.slots <- struct{}{}:
				n++
			default:
				break reserve
			}
		}
		out, err := c.client.ReceiveMessage(pollCtx, &awssqs.ReceiveMessageInput{
			QueueUrl:              aws.String(c.queue.url),
			MaxNumberOfMessages:   int32(n),
			WaitTimeSeconds:       int32(c.cfg.WaitTime / time.Second),
			VisibilityTimeout:     int32(c.cfg.VisibilityTimeout / time.Second),
			MessageAttributeNames: []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{
				types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameMessageGroupId,
			},
		}, noRetry)
		if err != nil {
			c.freeSlots(n)
			if pollCtx.Err() != nil {
				return
			}
			c.stats.receiveErrors.Add(1)
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			c.log.Warn("receive failed; retrying", zap.Error(classify("receive", err)), zap.Duration("backoff", backoff))
			select {
			case <-time.After(backoff):
			case <-pollCtx.Done():
				return
			}
			continue
		}
		backoff = 0
		c.freeSlots(n - len(out.Messages))
		c.stats.received.Add(int64(len(out.Messages)))
		for _, group := range groups(out.Messages, c.queue.fifo) {
			c.wg.Add(1)
			go c.work(workCtx, group)
		}
	}
}

func (c *Consumer) freeSlots(n int) {
	for range n {
		<-c.slots
	}
}

// groups splits a received batch into runs handled one after the other: on a FIFO queue one
// per message group, in the order received; elsewhere one per message.
func groups(msgs []types.Message, fifo bool) [][]types.Message {
	if !fifo {
		out := make([][]types.Message, len(msgs))
		for i := range msgs {
			out[i] = msgs[i : i+1]
		}
		return out
	}
	var out [][]types.Message
	index := map[string]int{}
	for _, m := range msgs {
		g := m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)]
		i, ok := index[g]
		if !ok {
			i = len(out)
			index[g] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], m)
	}
	return out
}

// work handles a run of messages in order, stopping at the first that is not handled (the rest
// of a FIFO group must not overtake it). Each message's slot is freed when it is done.
func (c *Consumer) work(ctx context.Context, run []types.Message) {
	defer c.wg.Done()
	for i, m := range run {
		if !c.process(ctx, m) {
			c.freeSlots(len(run) - i)
			return
		}
		<-c.slots
	}
}

// process handles one message and reports whether it was handled (and its delete attempted).
func (c *Consumer) process(ctx context.Context, m types.Message) bool {
	c.stats.inFlight.Add(1)
	defer c.stats.inFlight.Add(-1)
	receipt := aws.ToString(m.ReceiptHandle)
	log := c.log.With(zap.String("sqs_message_id", aws.ToString(m.MessageId)),
		zap.String("receive_count", m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]))
	msg, err := decodeReceived(m, c.cfg.RawPayload)
	if err != nil {
		c.stats.malformed.Add(1)
		log.Error("malformed message left to the queue's redrive policy", zap.Error(err))
		return false
	}
	log = log.With(zap.String("id", msg.ID), zap.String("type", msg.Type))
	if ctx.Err() != nil {
		return false // stopping: leave it for redelivery
	}

	hctx, cancel := context.WithCancel(ctx)
	if c.cfg.HandlerTimeout > 0 {
		hctx, cancel = context.WithTimeout(ctx, c.cfg.HandlerTimeout)
	}
	stopExtending := c.extend(receipt, log)
	err = c.call(hctx, msg)
	stopExtending()
	cancel()
	if err != nil {
		c.stats.failed.Add(1)
		log.Warn("handler failed; the message is left to redelivery and the queue's redrive policy", zap.Error(err))
		return false
	}
	c.stats.handled.Add(1)

	if err := c.delete(receipt); err != nil {
		c.stats.deleteErrors.Add(1)
		log.Warn("delete failed; the message will be delivered again", zap.Error(err))
		return true
	}
	c.stats.deleted.Add(1)
	log.Debug("handled")
	return true
}

// call runs the handler, turning a panic into an error so one bad message cannot stop the
// consumer.
func (c *Consumer) call(ctx context.Context, m *outbox.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sqs consumer: handler panicked: %v", r)
		}
	}()
	return c.handle(ctx, m)
}

// extend keeps the message hidden while its handler runs, until the returned func is called.
func (c *Consumer) extend(receipt string, log *zap.Logger) (stop func()) {
	if c.cfg.ExtendInterval < 0 {
		return func() {}
	}
	quit, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(c.cfg.ExtendInterval)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ExtendInterval)
			_, err := c.client.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(c.queue.url), ReceiptHandle: aws.String(receipt),
				VisibilityTimeout: int32(c.cfg.VisibilityTimeout / time.Second),
			}, noRetry)
			cancel()
			if err != nil {
				c.stats.extendErrors.Add(1)
				log.Warn("extending visibility failed", zap.Error(classify("change visibility", err)))
				continue
			}
			c.stats.extended.Add(1)
		}
	}()
	return func() {
		close(quit)
		<-exited
	}
}

// deletion is one handled message's receipt, and where its delete's outcome goes.
type deletion struct {
	receipt string
	result  chan error
}

// delete deletes a handled message through the deleter and returns the outcome.
func (c *Consumer) delete(receipt string) error {
	d := deletion{receipt: receipt, result: make(chan error, 1)}
	c.deletes <- d
	return <-d.result
}

// deleter deletes handled messages with DeleteMessageBatch: it takes one receipt, adds those
// already waiting (up to 10) without waiting for more, and sends them in one call. Under load
// deletes are batched; when idle a delete goes out at once. It runs until deletes is closed,
// and its calls are not cancelled by Stop: the work of those messages is done.
func (c *Consumer) deleter(done chan<- struct{}) {
	defer close(done)
	batch := make([]deletion, 0, MaxBatchEntries)
	for d := range c.deletes {
		batch = append(batch[:0], d)
	more:
		for len(batch) < MaxBatchEntries {
			select {
			case d, ok := <-c.deletes:
				if !ok {
					break more
				}
				batch = append(batch, d)
			default:
				break more
			}
		}
		c.deleteBatch(batch)
	}
}

func (c *Consumer) deleteBatch(batch []deletion) {
	entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
	for i, d := range batch {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(d.receipt)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(c.queue.url), Entries: entries}, noRetry)
	if err != nil {
		err = classify("delete", err)
		for _, d := range batch {
			d.result <- err
		}
		return
	}
	failed := make(map[string]error, len(out.Failed))
	for _, f := range out.Failed {
		failed[aws.ToString(f.Id)] = fmt.Errorf("sqs consumer: delete: %s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
	}
	for i, d := range batch {
		d.result <- failed[strconv.Itoa(i)]
	}
}
