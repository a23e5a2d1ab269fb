package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
)

func TestMain(m *testing.M) {
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	goleak.VerifyTestMain(m)
}

func TestMissingEnvironmentSaysWhatToSet(t *testing.T) {
	err := run(context.Background(), func(string) string { return "" }, io.Discard)
	if !isMissing(err) || !strings.Contains(err.Error(), "OUTBOX_POSTGRES_URL and OUTBOX_SQS_QUEUE_URL not set") {
		t.Fatalf("run without environment: %v, want a setup error naming both variables", err)
	}
	err = run(context.Background(), func(k string) string {
		return map[string]string{"OUTBOX_POSTGRES_URL": "postgres://x", "OUTBOX_SQS_QUEUE_URL": "q", "OUTBOX_SQS_ACCESS_KEY_ID": "AKIA"}[k]
	}, io.Discard)
	if !isMissing(err) || !strings.Contains(err.Error(), "OUTBOX_SQS_SECRET_ACCESS_KEY") {
		t.Fatalf("run with half the credentials: %v", err)
	}
}

func randomName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func TestExampleAgainstPostgresAndSQS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pgURL := outboxtest.ServiceAddr("OUTBOX_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
	endpoint := outboxtest.ServiceAddr("OUTBOX_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566")

	admin, err := pgxpool.New(ctx, pgURL)
	if err == nil {
		err = admin.Ping(ctx)
	}
	if err != nil {
		outboxtest.NeedService(t, "PostgreSQL at "+pgURL, err)
	}
	defer admin.Close()
	schema := randomName("example_pgsqs_")
	defer func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	}()

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

	vars := map[string]string{
		"OUTBOX_POSTGRES_URL": pgURL, "OUTBOX_POSTGRES_SCHEMA": schema, "OUTBOX_SQS_QUEUE_URL": aws.ToString(q.QueueUrl),
		"OUTBOX_SQS_ENDPOINT": endpoint, "OUTBOX_SQS_REGION": "us-east-1",
		"OUTBOX_SQS_ACCESS_KEY_ID": "test", "OUTBOX_SQS_SECRET_ACCESS_KEY": "test",
	}
	var out strings.Builder
	if err := run(ctx, func(k string) string { return vars[k] }, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "relay published 3 events") {
		t.Errorf("output:\n%s", out.String())
	}

	// The consumer's side: three envelopes in the origin package's format, with the user rows.
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
			if err := json.Unmarshal(msg.Result, &u); err != nil || u.ID == 0 {
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

// The built example exits 2 with one clear line when its environment is missing, and 1 when
// its database cannot be reached.
func TestExitCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example")
	}
	bin := filepath.Join(t.TempDir(), "postgres-sqs")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		env  []string
		code int
		want string
	}{
		{[]string{"PATH=" + os.Getenv("PATH")}, 2, "postgres-sqs: OUTBOX_POSTGRES_URL and OUTBOX_SQS_QUEUE_URL not set"},
		{[]string{"OUTBOX_POSTGRES_URL=postgres://app:pa55word@127.0.0.1:1/db?connect_timeout=2", "OUTBOX_SQS_QUEUE_URL=q"}, 1, "postgres-sqs: postgres: connect"},
	} {
		cmd := exec.Command(bin)
		cmd.Env = tt.env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		_ = cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != tt.code || !strings.HasPrefix(stderr.String(), tt.want) ||
			strings.Count(stderr.String(), "\n") != 1 || strings.Contains(stderr.String(), "pa55word") {
			t.Errorf("env %v: exit %d, stderr %q; want %d and one line starting %q", tt.env, code, stderr.String(), tt.code, tt.want)
		}
	}
}
