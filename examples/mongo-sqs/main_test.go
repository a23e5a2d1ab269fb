package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	driver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/goleak"

	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/mongo"
)

func TestMain(m *testing.M) {
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	goleak.VerifyTestMain(m)
}

func randomName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func TestMissingEnvironmentSaysWhatToSet(t *testing.T) {
	err := run(context.Background(), func(string) string { return "" }, io.Discard)
	if !isMissing(err) || !strings.Contains(err.Error(), "OUTBOX_MONGO_URI and OUTBOX_SQS_QUEUE_URL not set") {
		t.Fatalf("run without environment: %v, want a setup error naming both variables", err)
	}
}

// dropAfter drops database db on the server at uri when the test ends.
func dropAfter(t *testing.T, uri, db string) {
	t.Cleanup(func() {
		client, err := driver.Connect(options.Client().ApplyURI(uri))
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Database(db).Drop(ctx)
		_ = client.Disconnect(ctx)
	})
}

// A server without transactions (FerretDB, like a standalone mongod) must make the example fail
// clearly, having written nothing, rather than store events outside the business transaction.
func TestRefusesAServerWithoutTransactions(t *testing.T) {
	uri := outboxtest.ServiceAddr("OUTBOX_TEST_FERRETDB_URI", "mongodb://127.0.0.1:27017/")
	db := randomName("example_mongosqs_")
	vars := map[string]string{"OUTBOX_MONGO_URI": uri, "OUTBOX_MONGO_DATABASE": db, "OUTBOX_SQS_QUEUE_URL": "unused", "OUTBOX_SQS_REGION": "us-east-1"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, func(k string) string { return vars[k] }, io.Discard)
	if err != nil && strings.Contains(err.Error(), "connect") {
		outboxtest.NeedService(t, "FerretDB (scripts/services/ferretdb start) at "+uri, err)
	}
	dropAfter(t, uri, db)
	if !errors.Is(err, mongo.ErrTransactionsUnsupported) {
		t.Fatalf("run on a server without transactions: %v, want mongo.ErrTransactionsUnsupported", err)
	}
}

// The whole example needs a replica set, which OUTBOX_TEST_MONGO_URI names when one is available
// (none can be installed on the CI machines; see store/mongo/README.md).
func TestExampleAgainstReplicaSetAndSQS(t *testing.T) {
	uri := os.Getenv("OUTBOX_TEST_MONGO_URI")
	if uri == "" {
		t.Skip("OUTBOX_TEST_MONGO_URI is unset: no MongoDB replica set to run the example against")
	}
	endpoint := outboxtest.ServiceAddr("OUTBOX_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	httpTr := &http.Transport{}
	defer httpTr.CloseIdleConnections()
	client := awssqs.New(awssqs.Options{HTTPClient: &http.Client{Transport: httpTr}, Region: "us-east-1",
		BaseEndpoint: aws.String(endpoint), Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
	q, err := client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(randomName("example-users-"))})
	if err != nil {
		outboxtest.NeedService(t, "SQS emulator at "+endpoint, err)
	}
	defer func() {
		_, _ = client.DeleteQueue(context.Background(), &awssqs.DeleteQueueInput{QueueUrl: q.QueueUrl})
	}()
	db := randomName("example_mongosqs_")
	dropAfter(t, uri, db)

	vars := map[string]string{
		"OUTBOX_MONGO_URI": uri, "OUTBOX_MONGO_DATABASE": db, "OUTBOX_SQS_QUEUE_URL": aws.ToString(q.QueueUrl),
		"OUTBOX_SQS_ENDPOINT": endpoint, "OUTBOX_SQS_REGION": "us-east-1",
		"OUTBOX_SQS_ACCESS_KEY_ID": "test", "OUTBOX_SQS_SECRET_ACCESS_KEY": "test",
	}
	var out strings.Builder
	if err := run(ctx, func(k string) string { return vars[k] }, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := map[string]User{}
	failures := 0
	for len(got) < 3 && ctx.Err() == nil {
		// A short visibility timeout, and a failed receive retried: the emulator sometimes drops
		// the connection of a ReceiveMessage, whose messages then come back after the timeout.
		res, err := client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 5})
		if err != nil {
			if failures++; failures == 20 || ctx.Err() != nil {
				t.Fatalf("receive failed %d times in a row: %v", failures, err)
			}
			continue
		}
		failures = 0
		for _, m := range res.Messages {
			msg, err := backend.DecodeEnvelope([]byte(aws.ToString(m.Body)))
			if err != nil || msg.Type != "USER_CREATED" {
				t.Fatalf("body %q: %v", aws.ToString(m.Body), err)
			}
			var u User
			if err := json.Unmarshal(msg.Result, &u); err != nil || u.ID == "" {
				t.Fatalf("result %s: %v", msg.Result, err)
			}
			got[u.Name] = u
		}
	}
	for _, name := range []string{"ada", "grace", "edsger"} {
		if got[name].Email != name+"@example.com" {
			t.Errorf("no USER_CREATED event for %s (got %v)", name, got)
		}
	}
}
