package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
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

// newDatabase opens a store in a new schema, dropped when the test ends; in WAL mode (wal) with
// its replication slot, dropped too.
func newDatabase(t *testing.T, wal bool) *database {
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

	cfg := postgres.Config{URL: postgresURL(), Schema: schema, MaxConns: 16}
	if wal {
		var level string
		if err := admin.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
			t.Fatal(err)
		}
		if level != "logical" {
			outboxtest.NeedService(t, "PostgreSQL with wal_level=logical (scripts/services/postgres)", fmt.Errorf("wal_level is %s", level))
		}
		cfg.WAL = &postgres.WALConfig{}
	}
	store, err := postgres.New(ctx, cfg)
	if err != nil {
		t.Fatalf("postgres.New: %v", err)
	}
	if wal {
		st, err := store.SlotStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dropSlot(t, admin, st.Slot) })
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
	tr, err := sqs.New(testCtx(t), sqs.Config{Connection: sqs.Connection{Endpoint: sqsEndpoint(), Region: "us-east-1", AccessKeyID: "e2e", SecretAccessKey: "e2e"},
		QueueURL: "unused"})
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

// Consumers survive what a real SQS, and the emulator, do now and then: a ReceiveMessage call
// fails (fauxqs sometimes answers "use of closed network connection"), and the messages of a
// reply that never arrived stay invisible for the visibility timeout, then come back. So a
// failed call is counted and retried, not reported, unless the failures persist; the visibility
// timeout is short, so such messages return within seconds; and deletes are retried until each
// message is gone, since a message not deleted comes back and would read as a duplicate.
const (
	consumerVisibility      = 10 // seconds
	consumerMaxFailures     = 20 // consecutive failed calls before a consumer gives up
	consumerRetryBackoff    = 100 * time.Millisecond
	consumerDeleteAttempts  = 10
	consumerReceiveWaitTime = 1 // seconds of long polling
)

// consumeStats counts what the consumers of one consume call survived.
type consumeStats struct {
	receiveErrors, deleteRetries atomic.Int64
}

// consume receives, decodes and deletes messages from url with several consumers until stop
// returns true or ctx ends, calling got for each message in the order a consumer saw it. It
// returns an error only for a persistent failure or an undecodable message; once stop holds,
// whatever fails while the consumers wind down is no error.
func (b *broker) consume(ctx context.Context, url string, consumers int, got func(*outbox.Message, types.Message), stop func() bool) (*consumeStats, error) {
	stats := &consumeStats{}
	var wg sync.WaitGroup
	errs := make(chan error, consumers)
	for range consumers {
		wg.Go(func() {
			if err := b.consumeOne(ctx, url, stats, got, stop); err != nil && !stop() {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return stats, err
	}
	return stats, ctx.Err()
}

func (b *broker) consumeOne(ctx context.Context, url string, stats *consumeStats, got func(*outbox.Message, types.Message), stop func() bool) error {
	failures := 0
	for !stop() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		out, err := b.client().ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: consumerReceiveWaitTime,
			VisibilityTimeout:           consumerVisibility,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameMessageGroupId},
		})
		if err != nil {
			stats.receiveErrors.Add(1)
			if failures++; failures >= consumerMaxFailures {
				return fmt.Errorf("receive failed %d times in a row: %w", failures, err)
			}
			if err := pause(ctx, consumerRetryBackoff); err != nil {
				return err
			}
			continue
		}
		failures = 0
		var del []types.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			msg, err := backend.DecodeEnvelope([]byte(aws.ToString(m.Body)))
			if err != nil {
				return fmt.Errorf("decode %q: %w", aws.ToString(m.Body), err)
			}
			if k, ok := m.MessageAttributes[sqs.AttributeKey]; ok {
				msg.Key = aws.ToString(k.StringValue)
			}
			got(msg, m)
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if err := b.deleteAll(ctx, url, del, stats); err != nil {
			return err
		}
	}
	return nil
}

// deleteAll deletes the entries, retrying the calls and the entries that fail: deleting with a
// receipt handle twice is harmless, a message left behind is redelivered.
func (b *broker) deleteAll(ctx context.Context, url string, entries []types.DeleteMessageBatchRequestEntry, stats *consumeStats) error {
	var lastErr error
	for attempt := 0; len(entries) > 0; attempt++ {
		if attempt == consumerDeleteAttempts {
			return fmt.Errorf("delete: %d messages still not deleted after %d attempts: %v", len(entries), attempt, lastErr)
		}
		if attempt > 0 {
			stats.deleteRetries.Add(1)
			if err := pause(ctx, consumerRetryBackoff); err != nil {
				return err
			}
		}
		out, err := b.client().DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			lastErr = err
			continue
		}
		failed := map[string]bool{}
		for _, f := range out.Failed {
			failed[aws.ToString(f.Id)] = true
			lastErr = fmt.Errorf("%s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
		}
		var again []types.DeleteMessageBatchRequestEntry
		for _, e := range entries {
			if failed[aws.ToString(e.Id)] {
				again = append(again, e)
			}
		}
		entries = again
	}
	return nil
}

// pause waits d, or less when ctx ends: the backoff between retries of a failed call.
func pause(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// dropSlot drops the slot (and its publication, of the same name) once its reader, closed by
// an earlier cleanup, has let go.
func dropSlot(t *testing.T, admin *pgxpool.Pool, slot string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := admin.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Errorf("drop slot %s: %v", slot, err)
			return
		}
		time.Sleep(20 * time.Millisecond) // the server's walsender exits on its own
	}
	if _, err := admin.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{slot}.Sanitize()); err != nil {
		t.Errorf("drop publication %s: %v", slot, err)
	}
}
