package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
	"go.uber.org/zap"
)

// Consumer receives the messages of one SQS queue and hands each to the handler, Concurrency
// at a time, on the consumer runtime of package consume. A message is deleted when its handler
// returns nil. When the handler fails (returns an error, panics, or its context ends) the
// message is left in the queue: it becomes visible again when its visibility timeout ends (or,
// with Backoff set, after the backoff's delay) and SQS delivers it again, until the queue's
// redrive policy (maxReceiveCount) moves it to the dead-letter queue. A message whose body or
// attributes cannot be decoded is left to the redrive policy too: configure one on every queue.
// Messages a stopping consumer gives back are made visible at once.
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
	*consume.Consumer
	a *adapter
}

// ConsumerStats is a snapshot of a consumer's counters: Acked counts deletes, AckErrors the
// deletes that failed (those messages are delivered again), Rejected the malformed messages
// left to the redrive policy.
type ConsumerStats = consume.Stats

// NewConsumer validates cfg and returns a consumer of cfg.QueueURL that calls cfg.Handler for
// each message. It sends no request; Start (or Run) begins consuming. The handler must be safe
// for concurrent use when Concurrency is above 1.
func NewConsumer(ctx context.Context, cfg ConsumerConfig) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tc := cfg.transportConfig().withDefaults()
	client, httpTr, err := newClient(ctx, tc)
	if err != nil {
		return nil, err
	}
	a := &adapter{cfg: cfg, client: client, httpTr: httpTr, router: newRouter(client, tc), log: cfg.Logger}
	c, err := consume.New(a, consume.Config{
		Name: "sqs consumer", Handler: cfg.Handler, RawPayload: cfg.RawPayload,
		Concurrency: cfg.Concurrency, ReceiveBatch: cfg.ReceiveBatch, Pollers: cfg.Pollers,
		HandlerTimeout: cfg.HandlerTimeout, ExtendInterval: cfg.ExtendInterval, Backoff: cfg.Backoff,
		StopTimeout: DefaultStopTimeout, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &Consumer{Consumer: c, a: a}, nil
}

// Client returns the SQS client the consumer receives with.
func (c *Consumer) Client() *awssqs.Client { return c.a.client }

// adapter is the runtime's view of the queue.
type adapter struct {
	cfg    ConsumerConfig
	client *awssqs.Client
	httpTr *http.Transport
	router *router
	log    *zap.Logger
	queue  queue
	// deletes carries the receipts of handled messages to the deleter, which batches them.
	deletes     chan deletion
	deleterDone chan struct{}
}

// Open resolves the queue and starts the deleter.
func (a *adapter) Open(ctx context.Context) error {
	q, err := a.router.resolve(ctx, a.cfg.QueueURL)
	if err != nil {
		return err
	}
	a.queue = q
	a.deletes, a.deleterDone = make(chan deletion), make(chan struct{})
	go a.deleter()
	a.log.Info("sqs consumer: queue resolved", zap.String("queue", q.url), zap.Bool("fifo", q.fifo))
	return nil
}

// Close stops the deleter (every delivery is settled: no delete comes any more) and closes the
// idle connections of the HTTP client NewConsumer built.
func (a *adapter) Close(context.Context) error {
	if a.deletes != nil {
		close(a.deletes)
		<-a.deleterDone
	}
	if a.httpTr != nil {
		a.httpTr.CloseIdleConnections()
	}
	return nil
}

func (a *adapter) Receive(ctx context.Context, max int) ([]consume.Delivery, error) {
	out, err := a.client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
		QueueUrl:              aws.String(a.queue.url),
		MaxNumberOfMessages:   int32(max),
		WaitTimeSeconds:       int32(a.cfg.WaitTime / time.Second),
		VisibilityTimeout:     int32(a.cfg.VisibilityTimeout / time.Second),
		MessageAttributeNames: []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{
			types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameMessageGroupId,
		},
	}, noRetry)
	if err != nil {
		return nil, classify("receive", err)
	}
	ds := make([]consume.Delivery, len(out.Messages))
	for i, m := range out.Messages {
		ds[i] = a.delivery(m)
	}
	return ds, nil
}

// delivery turns a received message into the runtime's: the String attributes as headers (the
// packed outbox.headers attribute unpacked), the receive count, and on a FIFO queue the message
// group, so that a group's messages run in order.
func (a *adapter) delivery(m types.Message) consume.Delivery {
	d := consume.Delivery{
		Body: []byte(aws.ToString(m.Body)), Ref: aws.ToString(m.MessageId),
		Settler: &settler{a: a, receipt: aws.ToString(m.ReceiptHandle)},
	}
	d.Attempt, _ = strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	if a.queue.fifo {
		d.Group = m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)]
	}
	for name, v := range m.MessageAttributes {
		if !strings.HasPrefix(aws.ToString(v.DataType), "String") || v.StringValue == nil {
			continue // binary and number attributes are not headers this project sends
		}
		if d.Headers == nil {
			d.Headers = make(map[string]string, len(m.MessageAttributes))
		}
		if name != AttributeHeaders {
			d.Headers[name] = *v.StringValue
			continue
		}
		var packed map[string]string
		if err := json.Unmarshal([]byte(*v.StringValue), &packed); err != nil {
			d.Err = fmt.Errorf("attribute %s is not a JSON object of strings: %w", AttributeHeaders, err)
		}
		for k, hv := range packed {
			if _, set := m.MessageAttributes[k]; !set {
				d.Headers[k] = hv
			}
		}
	}
	return d
}

// settler settles one received message by its receipt handle.
type settler struct {
	a       *adapter
	receipt string
}

// Ack deletes the message through the deleter.
func (s *settler) Ack(context.Context) error {
	d := deletion{receipt: s.receipt, result: make(chan error, 1)}
	s.a.deletes <- d
	return <-d.result
}

// Nack makes a message given back by a stop visible at once; a failed one after the backoff's
// delay when Backoff is set, else it stays hidden until its visibility timeout ends.
func (s *settler) Nack(ctx context.Context, delay time.Duration, cause error) error {
	switch {
	case errors.Is(cause, consume.ErrStopped):
		return s.a.visibility(ctx, s.receipt, 0)
	case s.a.cfg.Backoff != (outbox.Backoff{}):
		secs := math.Ceil(min(delay, MaxVisibilityTimeout).Seconds())
		return s.a.visibility(ctx, s.receipt, time.Duration(secs)*time.Second)
	}
	return nil
}

// Reject leaves the message to the queue's redrive policy, which moves it to the dead-letter
// queue after maxReceiveCount receives.
func (s *settler) Reject(context.Context, error) error { return nil }

// Extend keeps the message hidden for another VisibilityTimeout.
func (s *settler) Extend(ctx context.Context) error {
	return s.a.visibility(ctx, s.receipt, s.a.cfg.VisibilityTimeout)
}

func (a *adapter) visibility(ctx context.Context, receipt string, d time.Duration) error {
	_, err := a.client.ChangeMessageVisibility(ctx, &awssqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(a.queue.url), ReceiptHandle: aws.String(receipt), VisibilityTimeout: int32(d / time.Second),
	}, noRetry)
	if err != nil {
		return classify("change visibility", err)
	}
	return nil
}

// deletion is one handled message's receipt, and where its delete's outcome goes.
type deletion struct {
	receipt string
	result  chan error
}

// deleter deletes handled messages with DeleteMessageBatch: it takes one receipt, adds those
// already waiting (up to 10) without waiting for more, and sends them in one call. Under load
// deletes are batched; when idle a delete goes out at once. It runs until deletes is closed.
func (a *adapter) deleter() {
	defer close(a.deleterDone)
	batch := make([]deletion, 0, MaxBatchEntries)
	for d := range a.deletes {
		batch = append(batch[:0], d)
	more:
		for len(batch) < MaxBatchEntries {
			select {
			case d, ok := <-a.deletes:
				if !ok {
					break more
				}
				batch = append(batch, d)
			default:
				break more
			}
		}
		a.deleteBatch(batch)
	}
}

func (a *adapter) deleteBatch(batch []deletion) {
	entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
	for i, d := range batch {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(d.receipt)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := a.client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(a.queue.url), Entries: entries}, noRetry)
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
