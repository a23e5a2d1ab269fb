package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
)

// The end-to-end test runs the built binary against the real PostgreSQL and the SQS emulator
// (scripts/services/fauxqs), the way an operator would.

func postgresURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
}

func sqsEndpoint() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566")
}

func randomName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// The binary is built once per test run, outside any test's deadline: a cold build compiles
// every driver and can take minutes on a small machine.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// buildBinary compiles the outbox command, once, into a temporary directory TestMain removes.
func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "outbox-cli-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "outbox")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// pgSchema makes a schema of its own, with a business table, dropped when the test ends.
func pgSchema(t *testing.T, ctx context.Context) string {
	t.Helper()
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
	schema := randomName("outbox_cli_")
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	return schema
}

// sqsClient returns a client of the emulator, skipping (or failing in CI) when it is down.
func sqsClient(t *testing.T, ctx context.Context) *awssqs.Client {
	t.Helper()
	// A transport of our own, whose idle connections the test closes: goleak checks for them.
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := awssqs.New(awssqs.Options{
		HTTPClient:   &http.Client{Transport: tr},
		Region:       "us-east-1",
		BaseEndpoint: aws.String(sqsEndpoint()),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := client.ListQueues(pingCtx, &awssqs.ListQueuesInput{MaxResults: aws.Int32(1)}); err != nil {
		outboxtest.NeedService(t, "SQS emulator (scripts/services/fauxqs start) at "+sqsEndpoint(), err)
	}
	return client
}

func createQueue(t *testing.T, ctx context.Context, client *awssqs.Client, fifo bool) string {
	t.Helper()
	in := &awssqs.CreateQueueInput{QueueName: aws.String(randomName("outbox-cli-"))}
	if fifo {
		in.QueueName = aws.String(*in.QueueName + ".fifo")
		in.Attributes = map[string]string{"FifoQueue": "true"}
	}
	out, err := client.CreateQueue(ctx, in)
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	url := aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		_, _ = client.DeleteQueue(context.Background(), &awssqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	})
	return url
}

// inbox receives from a queue in the background and records each message ID once, however
// often it arrives: consumers dedupe by ID.
type inbox struct {
	mu      sync.Mutex
	seen    map[string]int
	order   []string // IDs in order of first arrival
	changed chan struct{}
	errs    []error
	// receiveErrors counts the failed receives the consumer survived.
	receiveErrors int
	stop          context.CancelFunc
	done          chan struct{}
}

func receive(ctx context.Context, client *awssqs.Client, url string) *inbox {
	ctx, cancel := context.WithCancel(ctx)
	in := &inbox{seen: map[string]int{}, changed: make(chan struct{}), stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(in.done)
		failures := 0
		for ctx.Err() == nil {
			// A short visibility timeout: the messages of a reply lost on the way (the emulator
			// sometimes drops the connection of a ReceiveMessage) come back within seconds.
			out, err := client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
				QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 10,
			})
			if err != nil {
				if ctx.Err() != nil {
					return // stopping: what fails now is no error
				}
				// A failed receive is retried, not reported, unless failures persist.
				in.mu.Lock()
				in.receiveErrors++
				in.mu.Unlock()
				if failures++; failures == 20 {
					in.fail(fmt.Errorf("receive failed %d times in a row: %w", failures, err))
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			failures = 0
			var del []types.DeleteMessageBatchRequestEntry
			for i, m := range out.Messages {
				msg, err := backend.DecodeEnvelope([]byte(aws.ToString(m.Body)))
				if err != nil {
					in.fail(fmt.Errorf("decode %q: %w", aws.ToString(m.Body), err))
					continue
				}
				in.add(msg.ID)
				del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
			}
			if len(del) > 0 {
				_, _ = client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: del})
			}
		}
	}()
	return in
}

func (in *inbox) add(id string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.seen[id]++
	if in.seen[id] == 1 {
		in.order = append(in.order, id)
	}
	close(in.changed)
	in.changed = make(chan struct{})
}

func (in *inbox) fail(err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.errs = append(in.errs, err)
}

func (in *inbox) count() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.seen)
}

func (in *inbox) has(id string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.seen[id] > 0
}

// waitFor blocks until cond holds or the timeout passes, and reports whether it held.
func (in *inbox) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.After(timeout)
	for {
		in.mu.Lock()
		changed := in.changed
		in.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-deadline:
			return cond()
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (in *inbox) close() {
	in.stop()
	<-in.done
}

// relayProcess is a running `outbox relay`.
type relayProcess struct {
	cmd  *exec.Cmd
	addr string // of /healthz and /metrics
	logs *syncBuffer
	// stdout is what the relay printed: the envelopes of --transport memory.
	stdout *syncBuffer
	done   chan error // the exit, after stderr was read to its end
	// running closes when the relay logs that it runs.
	running chan struct{}
}

func startRelay(t *testing.T, bin string, environ []string, extra ...string) *relayProcess {
	t.Helper()
	p := launchRelay(t, bin, environ, extra...)
	// The endpoints are served before the relay starts: /healthz says "not running" until then.
	select {
	case <-p.running:
	case err := <-p.done:
		t.Fatalf("relay exited at start: %v\n%s", err, p.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("relay did not start:\n%s", p.logs.String())
	}
	return p
}

// launchRelay starts the relay binary and returns once it serves /healthz (p.addr), which it
// does before it connects to anything; p.running closes when the relay runs.
func launchRelay(t *testing.T, bin string, environ []string, extra ...string) *relayProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"relay", "--listen", "127.0.0.1:0", "--poll-interval", "100ms", "--shutdown-timeout", "20s"}, extra...)...)
	cmd.Env = environ
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &relayProcess{cmd: cmd, logs: &syncBuffer{}, stdout: &syncBuffer{}, done: make(chan error, 1), running: make(chan struct{})}
	cmd.Stdout = p.stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		dec := json.NewDecoder(io.TeeReader(stderr, p.logs))
		for {
			var line struct{ Msg, Addr string }
			if err := dec.Decode(&line); err != nil {
				break
			}
			switch line.Msg {
			case "serving /healthz and /metrics":
				addr <- line.Addr
			case "relay running":
				close(p.running)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done //nolint:errcheck // killed: its exit error says nothing
		}
	})
	select {
	case p.addr = <-addr:
	case err := <-p.done:
		t.Fatalf("relay exited at start: %v\n%s", err, p.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("relay did not start listening:\n%s", p.logs.String())
	}
	return p
}

// signal sends sig and returns the exit code.
func (p *relayProcess) signal(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return p.wait(t)
}

func (p *relayProcess) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done: //nolint:errcheck // the exit code below says how it ended
	case <-time.After(40 * time.Second):
		t.Fatalf("relay did not exit:\n%s", p.logs.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// outboxCmd runs a one-shot command of the binary and returns its exit code and stdout.
func outboxCmd(t *testing.T, bin string, environ []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = environ
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, _ := cmd.Output()
	if cmd.ProcessState.ExitCode() != 0 {
		t.Logf("outbox %s: stderr: %s", strings.Join(args, " "), stderr.String())
	}
	return cmd.ProcessState.ExitCode(), string(out)
}
