package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txoutbox/outbox/core"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/transport/sqs"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true") // loopback only, even by accident
	goleak.VerifyTestMain(m)
}

func postgresURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
}

func sqsEndpoint() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566")
}

func randomSuffix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// database is a PostgreSQL store in a schema of its own, with a business table (orders) next
// to the outbox table.
type database struct {
	store  *postgres.Store
	schema string
}

// newDatabase opens a store in a new schema, dropped when the test ends.
func newDatabase(t *testing.T) *database {
	t.Helper()
	ctx := testCtx(t)
	admin, err := pgxpool.New(ctx, postgresURL())
	if err == nil {
		err = admin.Ping(ctx)
	}
	if err != nil {
		if admin != nil {
			admin.Close()
		}
		outboxtest.NeedService(t, "PostgreSQL at "+postgresURL(), err)
	}
	t.Cleanup(admin.Close)
	schema := "outbox_e2e_" + randomSuffix()
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})

	store, err := postgres.New(ctx, postgres.Config{URL: postgresURL(), Schema: schema, MaxConns: 16})
	if err != nil {
		t.Fatalf("postgres.New: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	if err := store.EnsureSchema(ctx); err != nil {
		t.Fatalf("ensure schema: %v", err)
	}
	if _, err := admin.Exec(ctx, "CREATE TABLE "+pgx.Identifier{schema, "orders"}.Sanitize()+" (id bigserial PRIMARY KEY, writer int NOT NULL, n int NOT NULL)"); err != nil {
		t.Fatalf("create business table: %v", err)
	}
	return &database{store: store, schema: schema}
}

// broker is the SQS server, seen through an admin client.
type broker struct {
	tr *sqs.Transport // owns the admin client's connections
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	tr, err := sqs.New(testCtx(t), sqs.Config{QueueURL: "unused", Endpoint: sqsEndpoint(), Region: "us-east-1",
		AccessKeyID: "e2e", SecretAccessKey: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := tr.Client().ListQueues(ctx, &awssqs.ListQueuesInput{MaxResults: aws.Int32(1)}); err != nil {
		outboxtest.NeedService(t, "SQS server (scripts/services/fauxqs start) at "+sqsEndpoint(), err)
	}
	return &broker{tr: tr}
}

func (b *broker) client() *awssqs.Client { return b.tr.Client() }

// createQueue creates a queue deleted when the test ends and returns its URL.
func (b *broker) createQueue(t *testing.T, fifo bool) string {
	t.Helper()
	name := "outbox-e2e-" + randomSuffix()
	in := &awssqs.CreateQueueInput{QueueName: aws.String(name)}
	if fifo {
		in.QueueName = aws.String(name + ".fifo")
		in.Attributes = map[string]string{"FifoQueue": "true"}
	}
	out, err := b.client().CreateQueue(testCtx(t), in)
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	url := aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = b.client().DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	})
	return url
}

// consume receives, decodes and deletes messages from url with several consumers until stop
// returns true or ctx ends, calling got for each message in the order a consumer saw it.
func (b *broker) consume(ctx context.Context, url string, consumers int, got func(*core.Message, types.Message), stop func() bool) error {
	var wg sync.WaitGroup
	errs := make(chan error, consumers)
	for range consumers {
		wg.Go(func() {
			for !stop() {
				out, err := b.client().ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
					QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
					MessageAttributeNames:       []string{"All"},
					MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameMessageGroupId},
				})
				if err != nil {
					errs <- fmt.Errorf("receive: %w", err)
					return
				}
				var del []types.DeleteMessageBatchRequestEntry
				for i, m := range out.Messages {
					msg, err := core.DecodeEnvelope([]byte(aws.ToString(m.Body)))
					if err != nil {
						errs <- fmt.Errorf("decode %q: %w", aws.ToString(m.Body), err)
						return
					}
					if k, ok := m.MessageAttributes[sqs.AttributeKey]; ok {
						msg.Key = aws.ToString(k.StringValue)
					}
					got(msg, m)
					del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
				}
				if len(del) > 0 {
					if _, err := b.client().DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: del}); err != nil {
						errs <- fmt.Errorf("delete: %w", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if ctx.Err() == nil || !strings.Contains(err.Error(), "context") {
			return err
		}
	}
	return ctx.Err()
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
