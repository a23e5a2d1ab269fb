package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox/outboxtest"
)

// hungBroker accepts connections and never answers, like an SQS endpoint behind a black hole.
type hungBroker struct {
	ln       net.Listener
	accepted chan struct{} // closed at the first connection
	mu       sync.Mutex
	conns    []net.Conn
	done     chan struct{}
}

func newHungBroker(t *testing.T) *hungBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &hungBroker{ln: ln, accepted: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		var once sync.Once
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			once.Do(func() { close(b.accepted) })
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-b.done
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.conns {
			_ = c.Close()
		}
	})
	return b
}

// A publish that outlasts --shutdown-timeout is cancelled, its message released for the next
// relay, and the relay exits 1 saying so.
func TestShutdownTimeoutReleasesAndExitsOne(t *testing.T) {
	url, store := sqliteStore(t)
	msgs := outboxtest.NewMessages(1, "ORDER_PLACED", "")
	add(t, store, msgs...)
	broker := newHungBroker(t)
	endpoint := "http://" + broker.ln.Addr().String()

	var stdout, stderr syncBuffer
	vars := map[string]string{"OUTBOX_SQS_ACCESS_KEY_ID": "test", "OUTBOX_SQS_SECRET_ACCESS_KEY": "test"}
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(k string) string { return vars[k] }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int)
	go func() {
		done <- run(ctx, e, []string{"relay", "--store", url, "--listen", "off", "--poll-interval", "20ms",
			"--sqs-queue-url", endpoint + "/000000000000/orders", "--sqs-endpoint", endpoint, "--sqs-region", "us-east-1",
			"--lease", "1m", "--shutdown-timeout", "300ms"})
	}()
	select {
	case <-broker.accepted: // the publish is in flight, and will never be answered
	case code := <-done:
		t.Fatalf("relay exited %d before publishing: %s", code, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("the relay never reached the broker: %s", stderr.String())
	}
	cancel()
	var code int
	select {
	case code = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the relay did not give up within its shutdown timeout")
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	last := lines[len(lines)-1]
	if code != 1 || !strings.HasPrefix(last, "outbox relay: in-flight batches outlasted --shutdown-timeout 300ms") {
		t.Fatalf("exit %d, last stderr line %q; want 1 and the shutdown timeout named", code, last)
	}
	// Released, not lost: due again at once for the next relay, well before its 1m lease ends.
	counts, err := store.Counts(context.Background())
	if err != nil || counts.Pending != 1 {
		t.Fatalf("counts %+v, %v; want the message pending", counts, err)
	}
	claimed, err := store.Claim(context.Background(), claimNow("next-relay"))
	if err != nil || len(claimed) != 1 || claimed[0].ID != msgs[0].ID {
		t.Fatalf("the next relay claimed %v, %v; want the released message", claimed, err)
	}
}
