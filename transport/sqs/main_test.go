package sqs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/sqs"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The tests never reach beyond loopback: no instance-metadata lookups by the default
	// credential chain.
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	goleak.VerifyTestMain(m)
}

// Test credentials: fauxqs accepts any.
const (
	testRegion = "us-east-1"
	testKey    = "AKIAOUTBOXTEST"
	testSecret = "outbox-test-secret-do-not-print"
)

func endpoint() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566")
}

// server is the SQS test server with an admin client for creating, reading and deleting queues.
type server struct {
	admin *awssqs.Client
}

// needServer returns the test server, or skips (fails in CI) when it does not answer.
func needServer(t *testing.T) *server {
	t.Helper()
	tr := newTransport(t, sqs.Config{QueueURL: "unused"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := tr.Client().ListQueues(ctx, &awssqs.ListQueuesInput{MaxResults: aws.Int32(1)}); err != nil {
		outboxtest.NeedService(t, "SQS server (fauxqs: scripts/services/fauxqs start) at "+endpoint(), err)
	}
	return &server{admin: tr.Client()}
}

// newTransport builds a transport against the test server, closed at cleanup. Unset
// credentials, region and endpoint take the test server's.
func newTransport(t testing.TB, cfg sqs.Config) *sqs.Transport {
	t.Helper()
	if cfg.Client == nil && cfg.AWSConfig == nil {
		if cfg.Endpoint == "" {
			cfg.Endpoint = endpoint()
		}
		if cfg.Region == "" {
			cfg.Region = testRegion
		}
		if cfg.AccessKeyID == "" {
			cfg.AccessKeyID, cfg.SecretAccessKey = testKey, testSecret
		}
	}
	tr, err := sqs.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("sqs.New(%v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// queueName returns a name unique to this test run, ending in .fifo when fifo.
func queueName(t testing.TB, fifo bool) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, t.Name())
	if len(name) > 50 {
		name = name[len(name)-50:]
	}
	name = "outbox-" + name + "-" + hex.EncodeToString(b[:])
	if fifo {
		name += ".fifo"
	}
	return name
}

// createQueue creates a queue for this test and deletes it at cleanup. It returns its URL.
func (s *server) createQueue(t testing.TB, fifo bool) string {
	t.Helper()
	in := &awssqs.CreateQueueInput{QueueName: aws.String(queueName(t, fifo))}
	if fifo {
		in.Attributes = map[string]string{"FifoQueue": "true"}
	}
	out, err := s.admin.CreateQueue(testCtx(t), in)
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	url := aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := s.admin.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: aws.String(url)}); err != nil {
			t.Errorf("delete queue %s: %v", url, err)
		}
	})
	return url
}

// received is one message as a consumer sees it.
type received struct {
	Body  string
	Attrs map[string]types.MessageAttributeValue
	Msg   *outbox.Message // decoded from the envelope, with Key and Headers from the attributes
	Group string          // FIFO MessageGroupId
	Dedup string          // FIFO MessageDeduplicationId
}

// receive reads and deletes messages from queueURL until it has n or ctx ends.
func (s *server) receive(ctx context.Context, queueURL string, n int, raw bool) ([]received, error) {
	var got []received
	failures := 0
	for len(got) < n {
		// A short visibility timeout, and a failed receive retried: the emulator sometimes drops
		// the connection of a ReceiveMessage, whose messages then come back after the timeout.
		out, err := s.admin.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
			VisibilityTimeout:     5,
			QueueUrl:              aws.String(queueURL),
			MaxNumberOfMessages:   int32(min(10, n-len(got))),
			MessageAttributeNames: []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{
				types.MessageSystemAttributeNameMessageGroupId, types.MessageSystemAttributeNameMessageDeduplicationId,
			},
			WaitTimeSeconds: 1,
		})
		if err != nil {
			if ctx.Err() != nil {
				return got, fmt.Errorf("received %d of %d: %w", len(got), n, ctx.Err())
			}
			if failures++; failures < 20 {
				continue
			}
			return got, fmt.Errorf("receive failed %d times in a row: %w", failures, err)
		}
		failures = 0
		var del []types.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			r := received{Body: aws.ToString(m.Body), Attrs: m.MessageAttributes,
				Group: m.Attributes["MessageGroupId"], Dedup: m.Attributes["MessageDeduplicationId"]}
			if r.Msg, err = decode(r.Body, m.MessageAttributes, raw); err != nil {
				return got, err
			}
			got = append(got, r)
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
		}
		// Deleting twice with a receipt handle is harmless; a message left behind comes back.
		for attempt := 1; len(del) > 0; attempt++ {
			_, err := s.admin.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: del})
			if err == nil {
				break
			}
			if attempt == 10 || ctx.Err() != nil {
				return got, err
			}
		}
	}
	return got, nil
}

// decode reads a message the way a Go consumer would: the envelope (or the raw payload with
// the outbox.id and outbox.type attributes), Key from outbox.key, the other attributes as
// Headers.
func decode(body string, attrs map[string]types.MessageAttributeValue, raw bool) (*outbox.Message, error) {
	var m *outbox.Message
	if raw {
		m = &outbox.Message{Payload: []byte(body), ID: str(attrs[sqs.AttributeID]), Type: str(attrs[sqs.AttributeType])}
	} else {
		var err error
		if m, err = backend.DecodeEnvelope([]byte(body)); err != nil {
			return nil, err
		}
	}
	for name, v := range attrs {
		if aws.ToString(v.DataType) != "String" {
			return nil, fmt.Errorf("attribute %s has data type %s, want String", name, aws.ToString(v.DataType))
		}
		switch name {
		case sqs.AttributeKey:
			m.Key = str(v)
		case sqs.AttributeType, sqs.AttributeID:
		default:
			if m.Headers == nil {
				m.Headers = map[string]string{}
			}
			m.Headers[name] = str(v)
		}
	}
	return m, nil
}

func str(v types.MessageAttributeValue) string { return aws.ToString(v.StringValue) }

// expectNothing fails if queueURL holds a message within wait.
func (s *server) expectNothing(t *testing.T, queueURL string, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got, err := s.receive(ctx, queueURL, 1, false)
	if len(got) > 0 {
		t.Fatalf("unexpected message %s", got[0].Body)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("receive: %v", err)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// prepared runs backend.Prepare on msgs, as a store's Add does, and returns them.
func prepared(t testing.TB, msgs ...*outbox.Message) []*outbox.Message {
	t.Helper()
	if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// messages returns n valid messages of type typ, all with key (which may be empty), with
// payloads {"n":i}.
func messages(n int, typ, key string) []*outbox.Message {
	msgs := make([]*outbox.Message, n)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: typ, Key: key, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return msgs
}
