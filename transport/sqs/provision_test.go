package sqs_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/sqs"
)

// testConn is the connection part of a Config for the test server.
func testConn() sqs.Config {
	return sqs.Config{Connection: sqs.Connection{Endpoint: endpoint(), Region: testRegion, AccessKeyID: outbox.Secret(testKey), SecretAccessKey: outbox.Secret(testSecret)}}
}

// deleteAtCleanup deletes the named queues when the test ends, where they exist.
func (s *server) deleteAtCleanup(t *testing.T, names ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, n := range names {
			if u, err := s.admin.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(n)}); err == nil {
				_, _ = s.admin.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: u.QueueUrl})
			}
		}
	})
}

func TestProvisionPlan(t *testing.T) {
	p, err := sqs.ProvisionConfig{Transport: sqs.Config{QueueURL: "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo"}}.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Queues) != 2 {
		t.Fatalf("plan %+v", p)
	}
	dead, q := p.Queues[0], p.Queues[1]
	if dead.Name != "orders-dead.fifo" || dead.Attributes["FifoQueue"] != "true" || dead.Attributes["MessageRetentionPeriod"] != "1209600" {
		t.Errorf("dead-letter queue %+v", dead)
	}
	if q.Name != "orders.fifo" || q.Attributes["ContentBasedDeduplication"] != "false" || q.Attributes["VisibilityTimeout"] != "30" ||
		q.DeadLetterQueue != dead.Name || q.MaxReceiveCount != sqs.DefaultMaxReceiveCount {
		t.Errorf("queue %+v", q)
	}
	if _, err := (sqs.ProvisionConfig{}).Plan(); err == nil {
		t.Error("no queue: no error")
	}
}

// Provision creates the queue and its dead-letter queue, finds them the second time; a relay
// then publishes to the URL it returned and a Consumer receives, and a message whose handler
// keeps failing is moved to the dead-letter queue after MaxReceiveCount receives.
func TestProvisionThenRelayAndConsume(t *testing.T) {
	s := needServer(t)
	for _, fifo := range []bool{false, true} {
		t.Run(map[bool]string{false: "standard", true: "fifo"}[fifo], func(t *testing.T) {
			name := queueName(t, fifo)
			dead := strings.TrimSuffix(name, ".fifo") + sqs.DeadSuffix
			if fifo {
				dead += ".fifo"
			}
			s.deleteAtCleanup(t, name, dead)
			pc := sqs.ProvisionConfig{Transport: testConn(), Queue: name, MaxReceiveCount: 2, VisibilityTimeout: time.Second}
			rep, err := sqs.Provision(testCtx(t), pc)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(rep); got != "created dead-letter queue,created queue" || rep.QueueURL == "" {
				t.Fatalf("first run: %s; report %+v", got, rep)
			}
			url := rep.QueueURL
			rep, err = sqs.Provision(testCtx(t), pc)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(rep); got != "exists dead-letter queue,exists queue" || rep.QueueURL != url {
				t.Fatalf("second run: %s; report %+v", got, rep)
			}

			tcfg := testConn()
			tcfg.QueueURL = rep.QueueURL
			store := memstore.New()
			msgs := []*outbox.Message{
				{Type: "created", Key: "k", Payload: []byte(`{"n":1}`)},
				{Type: "poison", Key: "p", Payload: []byte(`{"n":2}`)},
			}
			if err := store.Add(testCtx(t), msgs...); err != nil {
				t.Fatal(err)
			}
			runRelay(t, store, newTransport(t, tcfg))
			got := newCollector()
			c := newConsumer(t, sqs.ConsumerConfig{QueueURL: rep.QueueURL, WaitTime: time.Second, VisibilityTimeout: time.Second}, func(ctx context.Context, m *outbox.Message) error {
				if m.Type == "poison" {
					return errors.New("cannot handle it")
				}
				return got.handle(ctx, m)
			})
			startConsumer(t, c)
			waitFor(t, 20*time.Second, "the consumer to receive the good message", func() bool { return got.len() == 1 })
			deadURL, err := s.admin.GetQueueUrl(testCtx(t), &awssqs.GetQueueUrlInput{QueueName: aws.String(dead)})
			if err != nil {
				t.Fatal(err)
			}
			var moved []received
			waitFor(t, 30*time.Second, "the poison message in the dead-letter queue", func() bool {
				r, err := s.receive(testCtx(t), aws.ToString(deadURL.QueueUrl), 1, false)
				moved = append(moved, r...)
				return err == nil && len(moved) > 0
			})
			if moved[0].Msg.ID != msgs[1].ID {
				t.Errorf("dead-lettered %s, want the poison message %s", moved[0].Msg.ID, msgs[1].ID)
			}
		})
	}
}

// A queue that exists with other attributes is reported and left as it is.
func TestProvisionConflict(t *testing.T) {
	s := needServer(t)
	name := queueName(t, false)
	s.deleteAtCleanup(t, name, name+sqs.DeadSuffix)
	if _, err := s.admin.CreateQueue(testCtx(t), &awssqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{"VisibilityTimeout": "7"}}); err != nil {
		t.Fatal(err)
	}
	rep, err := sqs.Provision(testCtx(t), sqs.ProvisionConfig{Transport: testConn(), Queue: name})
	if !errors.Is(err, sqs.ErrConflict) || !strings.Contains(err.Error(), "VisibilityTimeout 7, want 30") || !strings.Contains(err.Error(), "RedrivePolicy none") {
		t.Fatalf("err %v, want a conflict on the visibility timeout and the redrive policy", err)
	}
	if got := actions(rep); got != "created dead-letter queue,conflict queue" {
		t.Errorf("report %+v", rep)
	}
	u, err := s.admin.GetQueueUrl(testCtx(t), &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.admin.GetQueueAttributes(testCtx(t), &awssqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Attributes["VisibilityTimeout"] != "7" || a.Attributes["RedrivePolicy"] != "" {
		t.Errorf("the queue changed: %v", a.Attributes)
	}
}

func actions(rep sqs.ProvisionReport) string {
	var s []string
	for _, o := range rep.Objects {
		s = append(s, o.Action+" "+o.Kind)
	}
	return strings.Join(s, ",")
}

// Provision creates the queue and its dead-letter queue, and returns the queue's URL for the
// transport and the consumer.
func ExampleProvision() {
	cfg := sqs.Config{Connection: sqs.Connection{Region: "eu-west-1"}, QueueURL: "orders.fifo"}
	rep, err := sqs.Provision(context.Background(), sqs.ProvisionConfig{Transport: cfg})
	if err != nil {
		log.Fatal(err) // errors.Is(err, sqs.ErrConflict): a queue exists with other attributes
	}
	fmt.Println(rep.QueueURL)
}
