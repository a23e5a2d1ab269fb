package sqs_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/sqs"
)

// consumerHarness gives each suite test its own queue. The visibility timeout is short, so a
// receive whose reply the server loses (fauxqs does, now and then) costs two seconds, not 30.
func consumerHarness(s *server, fifo bool) outboxtest.ConsumerFactory {
	return func(t *testing.T) outboxtest.ConsumerHarness {
		url := s.createQueue(t, fifo)
		return outboxtest.ConsumerHarness{
			Transport: newTransport(t, sqs.Config{QueueURL: url}),
			NewConsumer: func(t *testing.T, h consume.Handler) outboxtest.ConsumerUnderTest {
				c, err := sqs.NewConsumer(context.Background(), sqs.ConsumerConfig{
					Connection:        sqs.Connection{Endpoint: endpoint(), Region: testRegion, AccessKeyID: outbox.Secret(testKey), SecretAccessKey: outbox.Secret(testSecret)},
					QueueURL:          url,
					Handler:           h,
					Concurrency:       4,
					WaitTime:          time.Second,
					VisibilityTimeout: 2 * time.Second,
					Backoff:           outbox.Backoff{Initial: time.Second, Max: 2 * time.Second, Jitter: -1},
				})
				if err != nil {
					t.Fatal(err)
				}
				return c
			},
			SendMalformed: func(ctx context.Context) error {
				in := &awssqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("not an envelope")}
				if fifo {
					in.MessageGroupId, in.MessageDeduplicationId = aws.String("malformed"), aws.String("malformed")
				}
				_, err := s.admin.SendMessage(ctx, in)
				return err
			},
		}
	}
}

func TestConsumerSuite(t *testing.T) {
	s := needServer(t)
	t.Run("Standard", func(t *testing.T) {
		outboxtest.RunConsumerSuite(t, consumerHarness(s, false), outboxtest.ConsumerFeatures{
			Malformed: true, MinRedeliveryDelay: time.Second,
		})
	})
	t.Run("FIFO", func(t *testing.T) {
		outboxtest.RunConsumerSuite(t, consumerHarness(s, true), outboxtest.ConsumerFeatures{
			Malformed: true, KeyOrder: true, DedupesPublishes: true, MinRedeliveryDelay: time.Second,
		})
	})
}
