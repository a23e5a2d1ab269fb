package sqs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/sqs"
)

// publishWithin publishes msgs and fails the test unless Publish returns within limit.
func publishWithin(t *testing.T, tr *sqs.Transport, limit time.Duration, msgs []*outbox.Message) error {
	t.Helper()
	start := time.Now()
	err := tr.Publish(testCtx(t), msgs)
	if took := time.Since(start); took > limit {
		t.Fatalf("publish took %v, want under %v", took, limit)
	}
	return err
}

func TestMissingQueue(t *testing.T) {
	s := needServer(t)
	existing := s.createQueue(t, false)
	missingURL := existing[:strings.LastIndex(existing, "/")+1] + "outbox-no-such-queue"
	for name, queue := range map[string]string{"URL": missingURL, "Name": "outbox-no-such-queue"} {
		t.Run(name, func(t *testing.T) {
			tr := newTransport(t, sqs.Config{QueueURL: queue})
			err := publishWithin(t, tr, 5*time.Second, prepared(t, messages(12, "T", "")...))
			var be *outbox.BatchError
			switch {
			case err == nil:
				t.Fatal("publishing to a missing queue succeeded")
			case errors.As(err, &be):
				t.Fatalf("publish = %v, want one error for the whole call", err)
			case outbox.IsPermanent(err) || !outbox.IsUnavailable(err):
				t.Errorf("error %v is not an outage: a missing queue blames the destination, not the messages", err)
			case !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "outbox-no-such-queue"):
				t.Errorf("error %q does not name the queue and the problem", err)
			}
		})
	}
}

// Nothing listens on port 1: the transport fails at once, retryably, without retrying itself.
func TestWrongEndpoint(t *testing.T) {
	tr := newTransport(t, sqs.Config{Connection: sqs.Connection{Endpoint: "http://127.0.0.1:1"}, QueueURL: "http://127.0.0.1:1/000000000000/q"})
	err := publishWithin(t, tr, 5*time.Second, prepared(t, messages(25, "T", "")...))
	switch {
	case err == nil:
		t.Fatal("publishing to a closed port succeeded")
	case outbox.IsPermanent(err):
		t.Errorf("error %v is permanent; an unreachable endpoint may come back", err)
	case !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "127.0.0.1:1"):
		t.Errorf("error %q does not say what failed", err)
	}
}

// An endpoint that accepts connections and never answers: Publish returns when ctx ends.
func TestHungEndpointHonoursContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})

	url := "http://" + ln.Addr().String()
	tr := newTransport(t, sqs.Config{Connection: sqs.Connection{Endpoint: url}, QueueURL: url + "/000000000000/q"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = tr.Publish(ctx, prepared(t, messages(30, "T", "")...))
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("publish took %v with a 300ms context", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || outbox.IsPermanent(err) {
		t.Fatalf("publish = %v, want the context's deadline, retryable", err)
	}
}

// fauxqs accepts any credentials, so the rejection AWS sends is replayed by the fault server
// (see faults_test.go). Here: the default credential chain finds keys in the environment, and
// with none anywhere the publish fails fast with an error that says so.
func TestDefaultCredentialChain(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, false)
	isolateAWSEnv(t)

	t.Setenv("AWS_ACCESS_KEY_ID", testKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	t.Setenv("AWS_REGION", testRegion)
	tr, err := sqs.New(testCtx(t), sqs.Config{Connection: sqs.Connection{Endpoint: endpoint()}, QueueURL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...)); err != nil {
		t.Fatalf("publish with credentials from the environment: %v", err)
	}
	if _, err := s.receive(testCtx(t), url, 1, false); err != nil {
		t.Fatal(err)
	}
}

func TestNoCredentialsAnywhere(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_REGION", testRegion)
	tr, err := sqs.New(testCtx(t), sqs.Config{Connection: sqs.Connection{Endpoint: endpoint()}, QueueURL: "q"})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	err = publishWithin(t, tr, 5*time.Second, prepared(t, messages(1, "T", "")...))
	if err == nil || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("publish without any credentials = %v, want an error about credentials", err)
	}
}

func TestNoRegionAnywhere(t *testing.T) {
	isolateAWSEnv(t)
	_, err := sqs.New(testCtx(t), sqs.Config{Connection: sqs.Connection{AccessKeyID: outbox.Secret(testKey), SecretAccessKey: outbox.Secret(testSecret)}, QueueURL: "q"})
	var ce *outbox.ConfigError
	if !errors.As(err, &ce) || ce.Field != "Region" {
		t.Fatalf("New without a region = %v, want a config error naming Region", err)
	}
}

// isolateAWSEnv hides every AWS setting of the machine from the test: no keys, no region, no
// profile files, no instance metadata.
func isolateAWSEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
		"AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		t.Setenv(k, "")
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// Secrets given in Config appear in no error and no description.
func TestSecretsNeverShown(t *testing.T) {
	const token = "session-token-do-not-print"
	cfg := sqs.Config{Connection: sqs.Connection{Endpoint: "http://127.0.0.1:1", Region: testRegion, AccessKeyID: outbox.Secret(testKey), SecretAccessKey: outbox.Secret(testSecret), SessionToken: outbox.Secret(token)},
		QueueURL: "http://127.0.0.1:1/000000000000/q"}
	tr := newTransport(t, cfg)
	err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...))
	bad := cfg
	bad.SecretAccessKey = ""
	for what, text := range map[string]string{
		"Config %v":      fmt.Sprintf("%v", cfg),
		"Config %+v":     fmt.Sprintf("%+v", cfg),
		"Config %#v":     fmt.Sprintf("%#v", cfg),
		"Transport %v":   fmt.Sprintf("%v", tr),
		"publish error":  err.Error(),
		"validate error": bad.Validate().Error(),
	} {
		if strings.Contains(text, testSecret) || strings.Contains(text, token) {
			t.Errorf("%s shows a secret: %s", what, text)
		}
	}
}

// A payload that is not JSON (a corrupt row) fails permanently in envelope mode, alone.
func TestCorruptPayload(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, false)
	tr := newTransport(t, sqs.Config{QueueURL: url})
	in := prepared(t, messages(2, "T", "")...)
	in[0].Payload = json.RawMessage(`{"broken"`)
	err := tr.Publish(testCtx(t), in)
	var be *outbox.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !outbox.IsPermanent(be.Failed[in[0].ID]) {
		t.Fatalf("publish = %v, want the corrupt message alone, permanent", err)
	}
	if _, err := s.receive(testCtx(t), url, 1, false); err != nil {
		t.Fatal(err)
	}
}

// When whole calls fail for different reasons, each message keeps its own queue's error.
func TestMissingQueuesKeepTheirOwnErrors(t *testing.T) {
	s := needServer(t)
	base := s.createQueue(t, false)
	base = base[:strings.LastIndex(base, "/")+1]
	tr := newTransport(t, sqs.Config{Routes: map[string]string{"A": base + "outbox-missing-a", "B": base + "outbox-missing-b"}})
	a := &outbox.Message{Type: "A", Payload: json.RawMessage(`1`)}
	b := &outbox.Message{Type: "B", Payload: json.RawMessage(`2`)}
	err := tr.Publish(testCtx(t), prepared(t, a, b))
	var be *outbox.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 {
		t.Fatalf("publish = %v, want a *outbox.BatchError naming both", err)
	}
	if !strings.Contains(be.Failed[a.ID].Error(), "outbox-missing-a") || !strings.Contains(be.Failed[b.ID].Error(), "outbox-missing-b") {
		t.Errorf("errors %v do not name each message's own queue", be)
	}
	if !outbox.IsUnavailable(err) {
		t.Errorf("%v is not an outage", err)
	}
}
