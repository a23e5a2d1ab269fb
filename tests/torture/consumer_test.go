//go:build torture

package torture

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/transport/sqs"
)

// delivery is one message as a consumer received it.
type delivery struct {
	msg   *outbox.Message // decoded envelope, Key from the outbox.key attribute
	group string          // MessageGroupId (FIFO queues)
	at    time.Time       // when the consumer received it
	sent  time.Time       // when the broker accepted it (SentTimestamp)
}

// consumer drains one queue continuously and records every delivery. A message the broker
// hands out again because its delete did not get through (the same SQS MessageId) is the
// broker's redelivery, not the relay's duplicate, and is recorded once.
type consumer struct {
	client *awssqs.Client
	url    string

	mu          sync.Mutex
	deliveries  []delivery
	seen        map[string]bool // SQS MessageIds
	distinct    map[string]bool // outbox IDs
	redelivered int
	errors      int
	lastErr     error
	bad         []string // bodies that did not decode

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startConsumer runs n receivers on url until stop is called. On a FIFO queue a message group
// is locked while one of its messages is in flight, and a delivery is recorded before it is
// deleted, so the record keeps each key's order even with several receivers.
func startConsumer(client *awssqs.Client, url string, n int) *consumer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{client: client, url: url, seen: map[string]bool{}, distinct: map[string]bool{}, cancel: cancel}
	for range n {
		c.wg.Go(func() { c.receive(ctx) })
	}
	return c
}

func (c *consumer) receive(ctx context.Context) {
	for ctx.Err() == nil {
		// Long polling; the timeout only bounds a call the frozen server never answers.
		callCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		out, err := c.client.ReceiveMessage(callCtx, &awssqs.ReceiveMessageInput{
			QueueUrl: aws.String(c.url), MaxNumberOfMessages: 10, WaitTimeSeconds: 2,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameMessageGroupId, types.MessageSystemAttributeNameSentTimestamp},
		})
		cancel()
		if err != nil {
			c.failed(ctx, err)
			continue
		}
		if len(out.Messages) == 0 {
			continue
		}
		now := time.Now()
		del := make([]types.DeleteMessageBatchRequestEntry, 0, len(out.Messages))
		c.mu.Lock()
		for i, m := range out.Messages {
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
			sqsID := aws.ToString(m.MessageId)
			if c.seen[sqsID] {
				c.redelivered++
				continue
			}
			c.seen[sqsID] = true
			msg, err := backend.DecodeEnvelope([]byte(aws.ToString(m.Body)))
			if err != nil {
				c.bad = append(c.bad, fmt.Sprintf("%v: %.200s", err, aws.ToString(m.Body)))
				continue
			}
			if k, ok := m.MessageAttributes[sqs.AttributeKey]; ok {
				msg.Key = aws.ToString(k.StringValue)
			}
			var sent time.Time
			if ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
				sent = time.UnixMilli(ms)
			}
			c.deliveries = append(c.deliveries, delivery{msg: msg, group: m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)], at: now, sent: sent})
			c.distinct[msg.ID] = true
		}
		c.mu.Unlock()
		callCtx, cancel = context.WithTimeout(ctx, 15*time.Second)
		_, err = c.client.DeleteMessageBatch(callCtx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(c.url), Entries: del})
		cancel()
		if err != nil {
			c.failed(ctx, err) // the messages come back after the visibility timeout
		}
	}
}

func (c *consumer) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	c.errors++
	c.lastErr = err
	c.mu.Unlock()
	sleep(ctx, 200*time.Millisecond)
}

// has reports how many of ids have arrived.
func (c *consumer) has(ids []string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, id := range ids {
		if c.distinct[id] {
			n++
		}
	}
	return n
}

func (c *consumer) stop() {
	c.cancel()
	c.wg.Wait()
}

// snapshot returns the deliveries in the order they were recorded.
func (c *consumer) snapshot() []delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]delivery(nil), c.deliveries...)
}
