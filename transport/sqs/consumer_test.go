package sqs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/sqs"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// newConsumer builds a consumer against the test server; it is stopped at cleanup.
func newConsumer(t *testing.T, cfg sqs.ConsumerConfig, handle func(context.Context, *outbox.Message) error) *sqs.Consumer {
	t.Helper()
	if cfg.Client == nil && cfg.AWSConfig == nil {
		cfg.Endpoint, cfg.Region, cfg.AccessKeyID, cfg.SecretAccessKey = endpoint(), testRegion, testKey, testSecret
	}
	cfg.Handler = handle
	c, err := sqs.NewConsumer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewConsumer(%v): %v", cfg, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return c
}

func startConsumer(t *testing.T, c *sqs.Consumer) {
	t.Helper()
	if err := c.Start(testCtx(t)); err != nil {
		t.Fatalf("start: %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// collector records what a handler received.
type collector struct {
	mu   sync.Mutex
	msgs map[string]*outbox.Message
	seen []string
}

func newCollector() *collector { return &collector{msgs: map[string]*outbox.Message{}} }

func (c *collector) handle(_ context.Context, m *outbox.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs[m.ID] = m
	c.seen = append(c.seen, m.ID)
	return nil
}

func (c *collector) len() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.msgs) }

func TestConsumerRoundTrip(t *testing.T) {
	srv := needServer(t)
	url := srv.createQueue(t, false)
	tr := newTransport(t, sqs.Config{QueueURL: url})
	sent := prepared(t, messages(25, "ORDER_PLACED", "customer-7")...)
	for _, m := range sent {
		m.Headers = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "acme"}
		m.Result = json.RawMessage(`{"ok":true}`)
	}
	if err := tr.Publish(testCtx(t), sent); err != nil {
		t.Fatal(err)
	}
	got := newCollector()
	c := newConsumer(t, sqs.ConsumerConfig{QueueURL: url, Concurrency: 4}, got.handle)
	startConsumer(t, c)
	waitFor(t, 20*time.Second, "25 messages", func() bool { return got.len() == 25 })
	waitFor(t, 10*time.Second, "25 deletes", func() bool { return c.Stats().Acked == 25 })
	for _, want := range sent {
		m := got.msgs[want.ID]
		switch {
		case m == nil:
			t.Fatalf("message %s not received", want.ID)
		case m.Type != want.Type || m.Key != want.Key || string(m.Payload) != string(want.Payload) || string(m.Result) != string(want.Result):
			t.Fatalf("received %+v, sent %+v", m, want)
		case !m.CreatedAt.Equal(want.CreatedAt):
			t.Fatalf("CreatedAt %v, sent %v", m.CreatedAt, want.CreatedAt)
		case m.Headers["traceparent"] != want.Headers["traceparent"] || m.Headers["tenant"] != "acme" || len(m.Headers) != 2:
			t.Fatalf("headers %v, sent %v (the outbox.* attributes are not headers)", m.Headers, want.Headers)
		}
	}
	if err := c.Stop(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Received != 25 || st.Handled != 25 || st.Failed != 0 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
	srv.expectNothing(t, url, 1500*time.Millisecond)
	if err := c.Start(testCtx(t)); !errors.Is(err, outbox.ErrConsumerStarted) {
		t.Fatalf("second Start: %v", err)
	}
}

func TestConsumerRawPayload(t *testing.T) {
	srv := needServer(t)
	url := srv.createQueue(t, false)
	tr := newTransport(t, sqs.Config{QueueURL: url, RawPayload: true})
	sent := prepared(t, messages(3, "RAW", "")...)
	if err := tr.Publish(testCtx(t), sent); err != nil {
		t.Fatal(err)
	}
	got := newCollector()
	c := newConsumer(t, sqs.ConsumerConfig{QueueURL: url, RawPayload: true}, got.handle)
	startConsumer(t, c)
	waitFor(t, 20*time.Second, "3 messages", func() bool { return got.len() == 3 })
	for _, want := range sent {
		if m := got.msgs[want.ID]; m == nil || m.Type != "RAW" || string(m.Payload) != string(want.Payload) || len(m.Headers) != 0 {
			t.Fatalf("received %+v for %+v", m, want)
		}
	}
}

// A failed handler leaves its message to SQS, which delivers it again once its visibility
// timeout ends; the failure is logged.
func TestConsumerFailureRedelivered(t *testing.T) {
	srv := needServer(t)
	url := srv.createQueue(t, false)
	tr := newTransport(t, sqs.Config{QueueURL: url})
	sent := prepared(t, messages(1, "T", "")...)
	if err := tr.Publish(testCtx(t), sent); err != nil {
		t.Fatal(err)
	}
	obs, logs := observer.New(zapcore.WarnLevel)
	var calls atomic.Int64
	c := newConsumer(t, sqs.ConsumerConfig{QueueURL: url, VisibilityTimeout: time.Second, Logger: zap.New(obs)},
		func(ctx context.Context, m *outbox.Message) error {
			switch calls.Add(1) {
			case 1:
				return errors.New("database briefly down")
			case 2:
				panic("handler bug")
			}
			return nil
		})
	startConsumer(t, c)
	waitFor(t, 20*time.Second, "the third delivery to be handled", func() bool { return c.Stats().Acked == 1 })
	st := c.Stats()
	if st.Received != 3 || st.Failed != 2 || st.Handled != 1 {
		t.Fatalf("stats %+v, want 3 received, 2 failed, 1 handled", st)
	}
	failures := logs.FilterMessageSnippet("handler failed").All()
	if len(failures) != 2 || !strings.Contains(fmt.Sprint(failures[1].ContextMap()["error"]), "panicked: handler bug") {
		t.Fatalf("failure logs: %+v", failures)
	}
	if id := failures[0].ContextMap()["id"]; id != sent[0].ID {
		t.Fatalf("the failure log names message %v, want %s", id, sent[0].ID)
	}
}

// A handler slower than the visibility timeout keeps its message hidden by extending it.
func TestConsumerExtendsVisibility(t *testing.T) {
	srv := needServer(t)
	url := srv.createQueue(t, false)
	tr := newTransport(t, sqs.Config{QueueURL: url})
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "SLOW", "")...)); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	var c *sqs.Consumer
	// Extensions every 500ms of a 2s visibility timeout: one may be 1.5s late before SQS would
	// redeliver, a margin a loaded machine keeps.
	c = newConsumer(t, sqs.ConsumerConfig{QueueURL: url, Concurrency: 2, VisibilityTimeout: 2 * time.Second, ExtendInterval: 500 * time.Millisecond},
		func(ctx context.Context, m *outbox.Message) error {
			calls.Add(1)
			// Outlive the visibility timeout twice over, by the extensions counted.
			for c.Stats().Extended < 9 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
			return nil
		})
	startConsumer(t, c)
	waitFor(t, 20*time.Second, "the slow handler to finish", func() bool { return c.Stats().Acked == 1 })
	if n := calls.Load(); n != 1 {
		t.Fatalf("the handler ran %d times; the message was redelivered while it ran", n)
	}
	if st := c.Stats(); st.ExtendErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConsumerMalformed(t *testing.T) {
	srv := needServer(t)
	url := srv.createQueue(t, false)
	if _, err := srv.admin.SendMessage(testCtx(t), &awssqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("not an envelope")}); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	c := newConsumer(t, sqs.ConsumerConfig{QueueURL: url, VisibilityTimeout: 5 * time.Second},
		func(context.Context, *outbox.Message) error { calls.Add(1); return nil })
	startConsumer(t, c)
	waitFor(t, 20*time.Second, "the malformed message", func() bool { return c.Stats().Malformed == 1 })
	if err := c.Stop(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); calls.Load() != 0 || st.Acked != 0 {
		t.Fatalf("a malformed message reached the handler or was deleted: calls %d, stats %+v", calls.Load(), st)
	}
}

// Stop waits for handlers until its deadline, then cancels them; their messages are not
// deleted and come back to the next consumer: a consumer killed mid-handler loses nothing.
func TestConsumerStopDeadline(t *testing.T) {
	srv := needServer(t)
	url := srv.createQueue(t, false)
	tr := newTransport(t, sqs.Config{QueueURL: url})
	sent := prepared(t, messages(1, "T", "")...)
	if err := tr.Publish(testCtx(t), sent); err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	var cancelled atomic.Bool
	c := newConsumer(t, sqs.ConsumerConfig{QueueURL: url, VisibilityTimeout: time.Second, ExtendInterval: -1},
		func(ctx context.Context, m *outbox.Message) error {
			close(entered)
			<-ctx.Done()
			cancelled.Store(true)
			return ctx.Err()
		})
	startConsumer(t, c)
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := c.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop past its deadline: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Stop took %v with a 200ms deadline", d)
	}
	if err := c.Stop(testCtx(t)); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if !cancelled.Load() {
		t.Fatal("the handler's context was not cancelled")
	}
	got := newCollector()
	next := newConsumer(t, sqs.ConsumerConfig{QueueURL: url}, got.handle)
	startConsumer(t, next)
	waitFor(t, 20*time.Second, "the redelivery", func() bool { return got.len() == 1 })
	if got.seen[0] != sent[0].ID {
		t.Fatalf("redelivered %s, want %s", got.seen[0], sent[0].ID)
	}
}

// On a FIFO queue each key's messages are handled in order even with many handlers.
func TestConsumerFIFOOrder(t *testing.T) {
	srv := needServer(t)
	url := srv.createQueue(t, true)
	tr := newTransport(t, sqs.Config{QueueURL: url})
	var sent []*outbox.Message
	for k := range 3 {
		sent = append(sent, messages(10, "T", fmt.Sprintf("key-%d", k))...)
	}
	prepared(t, sent...)
	for k := range 3 {
		if err := tr.Publish(testCtx(t), sent[k*10:(k+1)*10]); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	order := map[string][]string{}
	c := newConsumer(t, sqs.ConsumerConfig{QueueURL: url, Concurrency: 8}, func(_ context.Context, m *outbox.Message) error {
		mu.Lock()
		defer mu.Unlock()
		order[m.Key] = append(order[m.Key], m.ID)
		return nil
	})
	startConsumer(t, c)
	waitFor(t, 20*time.Second, "30 deletes", func() bool { return c.Stats().Acked == 30 })
	mu.Lock()
	defer mu.Unlock()
	for k := range 3 {
		key := fmt.Sprintf("key-%d", k)
		for i, id := range order[key] {
			if id != sent[k*10+i].ID {
				t.Fatalf("key %s: message %d is %s, want %s", key, i, id, sent[k*10+i].ID)
			}
		}
	}
}

func TestConsumerConfig(t *testing.T) {
	base := sqs.ConsumerConfig{Connection: sqs.Connection{Region: testRegion}, QueueURL: "orders", Handler: func(context.Context, *outbox.Message) error { return nil }}
	cases := []struct {
		edit  func(*sqs.ConsumerConfig)
		field string
	}{
		{func(c *sqs.ConsumerConfig) { c.QueueURL = "" }, "QueueURL"},
		{func(c *sqs.ConsumerConfig) { c.QueueURL = "bad queue name" }, "QueueURL"},
		{func(c *sqs.ConsumerConfig) { c.Concurrency = -1 }, "Concurrency"},
		{func(c *sqs.ConsumerConfig) { c.ReceiveBatch = 11 }, "ReceiveBatch"},
		{func(c *sqs.ConsumerConfig) { c.WaitTime = 21 * time.Second }, "WaitTime"},
		{func(c *sqs.ConsumerConfig) { c.WaitTime = 1500 * time.Millisecond }, "WaitTime"},
		{func(c *sqs.ConsumerConfig) { c.VisibilityTimeout = 13 * time.Hour }, "VisibilityTimeout"},
		{func(c *sqs.ConsumerConfig) { c.VisibilityTimeout = 500 * time.Millisecond }, "VisibilityTimeout"},
		{func(c *sqs.ConsumerConfig) { c.VisibilityTimeout, c.ExtendInterval = 2*time.Second, 2*time.Second }, "ExtendInterval"},
		{func(c *sqs.ConsumerConfig) { c.HandlerTimeout = -1 }, "HandlerTimeout"},
		{func(c *sqs.ConsumerConfig) { c.Handler = nil }, "Handler"},
		{func(c *sqs.ConsumerConfig) { c.Backoff.Initial = -1 }, "Backoff.Initial"},
		{func(c *sqs.ConsumerConfig) { c.AccessKeyID = "AKIA" }, "SecretAccessKey"},
	}
	for _, tc := range cases {
		cfg := base
		tc.edit(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate(%v) = %v, want a config error naming %s", cfg, err, tc.field)
		}
	}
	if err := base.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	noHandler := base
	noHandler.Handler = nil
	if _, err := sqs.NewConsumer(context.Background(), noHandler); err == nil || !strings.Contains(err.Error(), "Handler") {
		t.Fatalf("NewConsumer without a handler: %v", err)
	}
	secret := base
	secret.AccessKeyID, secret.SecretAccessKey = testKey, testSecret
	for _, s := range []string{fmt.Sprintf("%s", secret), fmt.Sprintf("%#v", secret), fmt.Sprintf("%v", secret)} {
		if strings.Contains(s, testSecret) {
			t.Fatalf("config text shows the secret: %s", s)
		}
	}
}
