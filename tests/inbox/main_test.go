package inbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/goleak"

	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/sqs"
)

func TestMain(m *testing.M) {
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true") // loopback only, even by accident
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild()) // a consumer process of TestExactlyOnce, killed by its parent
	}
	goleak.VerifyTestMain(m)
}

// Test credentials: fauxqs accepts any.
const (
	testRegion = "us-east-1"
	testKey    = "AKIAOUTBOXTEST"
	testSecret = "outbox-test-secret"
)

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func postgresURL() string {
	return env("OUTBOX_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
}
func sqsEndpoint() string { return env("OUTBOX_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566") }

func randomSuffix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// transport returns an SQS transport of the test server for queueURL, closed at cleanup.
func transport(t *testing.T, queueURL string) *sqs.Transport {
	t.Helper()
	tr, err := sqs.New(context.Background(), sqs.Config{Connection: sqs.Connection{Region: testRegion, AccessKeyID: testKey, SecretAccessKey: testSecret, Endpoint: sqsEndpoint()},
		QueueURL: queueURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func consumerConfig(queueURL string) sqs.ConsumerConfig {
	return sqs.ConsumerConfig{Connection: sqs.Connection{Region: testRegion, AccessKeyID: testKey, SecretAccessKey: testSecret, Endpoint: sqsEndpoint()}, QueueURL: queueURL}
}

// newQueue creates a standard queue (no deduplication: every duplicate reaches the consumers)
// for this test, deleted at cleanup, and returns its URL and an admin client.
func newQueue(t *testing.T) (string, *awssqs.Client) {
	t.Helper()
	admin := transport(t, "unused").Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := admin.ListQueues(ctx, &awssqs.ListQueuesInput{MaxResults: aws.Int32(1)}); err != nil {
		outboxtest.NeedService(t, "SQS server (fauxqs: scripts/services/fauxqs start) at "+sqsEndpoint(), err)
	}
	out, err := admin.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String("inbox-e2e-" + randomSuffix())})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	url := aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: aws.String(url)}); err != nil {
			t.Errorf("delete queue: %v", err)
		}
	})
	return url, admin
}

// queueEmpty reports whether the queue holds no message, visible or in flight.
func queueEmpty(ctx context.Context, admin *awssqs.Client, url string) (bool, error) {
	out, err := admin.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible, types.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
	if err != nil {
		return false, err
	}
	for _, v := range out.Attributes {
		if v != "0" {
			return false, nil
		}
	}
	return len(out.Attributes) > 0, nil
}
