package inbox

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/sqs"
)

// The environment of a consumer process.
const (
	childEnv       = "INBOX_E2E_CHILD" // postgres or sqlite
	childDSNEnv    = "INBOX_E2E_DSN"   // PostgreSQL URL, or the SQLite file
	childSchemaEnv = "INBOX_E2E_SCHEMA"
	childQueueEnv  = "INBOX_E2E_QUEUE"
)

// handlingPrefix starts the line a consumer process prints once a message's effect is written
// in its still open transaction.
const handlingPrefix = "HANDLING "

// runChild is a consumer process over the test's consumer database: it handles one message at a
// time with the inbox and, once the effect of a message is written inside the transaction,
// prints the message ID and holds the transaction open until its parent kills it (SIGKILL). It
// returns an exit code only when it fails to start.
func runChild() int {
	ctx := context.Background()
	var cs consumerSide
	var err error
	switch kind := os.Getenv(childEnv); kind {
	case "postgres":
		cs, err = openPostgresConsumer(ctx, os.Getenv(childDSNEnv), os.Getenv(childSchemaEnv), false)
	case "sqlite":
		cs, err = openSQLiteConsumer(ctx, os.Getenv(childDSNEnv), false)
	default:
		err = fmt.Errorf("unknown %s %q", childEnv, kind)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer process:", err)
		return 2
	}
	cfg := consumerConfig(os.Getenv(childQueueEnv))
	cfg.Concurrency, cfg.ReceiveBatch, cfg.VisibilityTimeout, cfg.ExtendInterval = 1, 1, time.Second, -1
	cfg.Handler = func(ctx context.Context, m *outbox.Message) error {
		_, err := cs.handle(ctx, "billing", m, func(context.Context) error {
			fmt.Fprintln(os.Stdout, handlingPrefix+m.ID)
			time.Sleep(time.Hour) // killed here, mid-transaction
			return nil
		})
		return err
	}
	c, err := sqs.NewConsumer(ctx, cfg)
	if err == nil {
		err = c.Start(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer process:", err)
		return 2
	}
	time.Sleep(time.Hour)
	return 0
}

// child is a running consumer process.
type child struct {
	cmd      *exec.Cmd
	handling chan string // the ID of the message whose transaction it holds open
	stderr   strings.Builder
}

// startChild starts a consumer process of queueURL over b's consumer database.
func startChild(t *testing.T, b *database, queueURL string) *child {
	t.Helper()
	c := &child{handling: make(chan string, 1)}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), append(b.child, childQueueEnv+"="+queueURL)...)
	c.cmd.Stderr = &c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), handlingPrefix); ok {
				select {
				case c.handling <- id:
				default:
				}
			}
		}
	}()
	return c
}

// killMidHandler waits until the process holds a message's transaction open, kills it with
// SIGKILL and returns that message's ID.
func (c *child) killMidHandler(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case id := <-c.handling:
		if err := c.cmd.Process.Kill(); err != nil {
			t.Fatalf("kill the consumer process: %v", err)
		}
		_ = c.cmd.Wait()
		return id
	case <-time.After(timeout):
		t.Fatalf("the consumer process handled nothing within %v; its stderr: %s", timeout, c.stderr.String())
		return ""
	}
}
