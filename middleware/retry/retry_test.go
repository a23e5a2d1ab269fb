package retry_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/middleware/retry"
	"github.com/txoutbox/outbox/outboxtest"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fast keeps the tests quick; the behaviour under test does not depend on the delays.
var fast = outbox.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}

func messages(t *testing.T, n int) []*outbox.Message {
	t.Helper()
	msgs := make([]*outbox.Message, n)
	for i := range msgs {
		m, err := outbox.NewMessage("ORDER_PLACED", map[string]int{"n": i})
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = m
	}
	if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// counting records every batch the middleware hands to the transport.
type counting struct {
	mu      sync.Mutex
	batches [][]string
	next    outbox.Handler
	after   func(call int) // runs after each call, e.g. to heal the transport
}

func (c *counting) publish(ctx context.Context, msgs []*outbox.Message) error {
	err := c.next(ctx, msgs)
	c.mu.Lock()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	c.batches = append(c.batches, ids)
	call := len(c.batches)
	c.mu.Unlock()
	if c.after != nil {
		c.after(call)
	}
	return err
}

func (c *counting) calls() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]string(nil), c.batches...)
}

func build(t *testing.T, cfg retry.Config, next outbox.Handler) outbox.Handler {
	t.Helper()
	mw, err := cfg.Middleware()
	if err != nil {
		t.Fatal(err)
	}
	return outbox.Chain(next, mw)
}

func TestRetriesWholeBatchFailureUntilPublished(t *testing.T) {
	tr := memory.New()
	tr.FailNext(2, errors.New("broker throttled"))
	c := &counting{next: tr.Publish}
	h := build(t, retry.Config{MaxRetries: 3, Backoff: fast}, c.publish)

	msgs := messages(t, 3)
	if err := h(context.Background(), msgs); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if got := len(c.calls()); got != 3 {
		t.Errorf("transport calls = %d, want 3 (two failures, one success)", got)
	}
	if got := tr.Len(); got != 3 {
		t.Errorf("published %d messages, want 3", got)
	}
}

func TestPermanentIsNotRetried(t *testing.T) {
	tr := memory.New()
	tr.FailNext(1, outbox.Permanent(errors.New("queue does not exist")))
	c := &counting{next: tr.Publish}
	h := build(t, retry.Config{MaxRetries: 5, Backoff: outbox.Backoff{Initial: time.Hour, Max: time.Hour}}, c.publish)

	start := time.Now()
	err := h(context.Background(), messages(t, 2))
	if !outbox.IsPermanent(err) || !strings.Contains(err.Error(), "queue does not exist") {
		t.Fatalf("err = %v, want the permanent error itself", err)
	}
	if got := len(c.calls()); got != 1 {
		t.Errorf("transport calls = %d, want 1", got)
	}
	// An hour-long backoff would have been waited had the middleware meant to retry.
	if d := time.Since(start); d > time.Second {
		t.Errorf("returned after %v, want at once", d)
	}
}

// An outage goes straight back to the relay, which pauses without charging attempts; retrying
// into it would only hold the batch. A message that alone is unavailable is not retried either.
func TestUnavailableIsNotRetried(t *testing.T) {
	tr := memory.New()
	tr.FailNext(1, outbox.Unavailable(errors.New("broker unreachable")))
	c := &counting{next: tr.Publish}
	h := build(t, retry.Config{MaxRetries: 5, Backoff: outbox.Backoff{Initial: time.Hour, Max: time.Hour}}, c.publish)
	if err := h(context.Background(), messages(t, 2)); !outbox.IsUnavailable(err) {
		t.Fatalf("err = %v, want the outage itself", err)
	}
	msgs := messages(t, 2)
	tr.FailIDs(outbox.Unavailable(errors.New("queue briefly missing")), msgs[0].ID)
	err := h(context.Background(), msgs)
	var be *outbox.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !outbox.IsUnavailable(be.Failed[msgs[0].ID]) {
		t.Fatalf("err = %v, want the one unavailable message", err)
	}
	if got := len(c.calls()); got != 2 {
		t.Errorf("transport calls = %d, want 2: nothing retried", got)
	}
}

func TestRetriesOnlyFailedIDs(t *testing.T) {
	tr := memory.New()
	msgs := messages(t, 4)
	tr.FailIDs(errors.New("throttled"), msgs[1].ID, msgs[3].ID)
	c := &counting{next: tr.Publish}
	c.after = func(call int) {
		if call == 1 {
			tr.Heal()
		}
	}
	h := build(t, retry.Config{Backoff: fast}, c.publish)

	if err := h(context.Background(), msgs); err != nil {
		t.Fatalf("publish: %v", err)
	}
	calls := c.calls()
	if len(calls) != 2 {
		t.Fatalf("transport calls = %d, want 2", len(calls))
	}
	if want := []string{msgs[1].ID, msgs[3].ID}; !slices.Equal(calls[1], want) {
		t.Errorf("retried %v, want only the failed %v", calls[1], want)
	}
	if got := tr.Len(); got != 4 {
		t.Errorf("published %d messages, want each of the 4 once", got)
	}
}

func TestFinalBatchErrorNamesOnlyWhatStillFailed(t *testing.T) {
	tr := memory.New()
	msgs := messages(t, 4)
	tr.FailIDs(outbox.Permanent(errors.New("too large")), msgs[0].ID)
	tr.FailIDs(errors.New("throttled"), msgs[2].ID)
	c := &counting{next: tr.Publish}
	h := build(t, retry.Config{MaxRetries: 2, Backoff: fast}, c.publish)

	err := h(context.Background(), msgs)
	var be *outbox.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a *outbox.BatchError", err)
	}
	if len(be.Failed) != 2 || be.Failed[msgs[0].ID] == nil || be.Failed[msgs[2].ID] == nil {
		t.Fatalf("failed = %v, want exactly messages 0 and 2", be.Failed)
	}
	if !outbox.IsPermanent(be.Failed[msgs[0].ID]) || outbox.IsPermanent(be.Failed[msgs[2].ID]) {
		t.Errorf("permanence lost: %v", be.Failed)
	}
	calls := c.calls()
	if len(calls) != 3 {
		t.Fatalf("transport calls = %d, want 1 + 2 retries", len(calls))
	}
	for _, retried := range calls[1:] {
		if !slices.Equal(retried, []string{msgs[2].ID}) {
			t.Errorf("retried %v, want only the transient failure %s", retried, msgs[2].ID)
		}
	}
}

func TestWholeFailureAfterPartialBecomesPerMessage(t *testing.T) {
	msgs := messages(t, 3)
	down := errors.New("connection reset")
	call := 0
	next := func(ctx context.Context, batch []*outbox.Message) error {
		call++
		if call == 1 {
			be := outbox.NewBatchError()
			be.Add(msgs[0].ID, errors.New("throttled"))
			return be
		}
		return down
	}
	h := build(t, retry.Config{MaxRetries: 1, Backoff: fast}, next)

	err := h(context.Background(), msgs)
	var be *outbox.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !errors.Is(be.Failed[msgs[0].ID], down) {
		t.Fatalf("err = %v, want a BatchError naming only %s with the last error", err, msgs[0].ID)
	}
}

func TestDoesNotWaitPastTheDeadline(t *testing.T) {
	tr := memory.New()
	tr.FailAll(errors.New("broker down"))
	c := &counting{next: tr.Publish}
	h := build(t, retry.Config{Backoff: outbox.Backoff{Initial: time.Second, Max: time.Second, Jitter: -1}}, c.publish)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := h(ctx, messages(t, 1))
	if err == nil || !strings.Contains(err.Error(), "broker down") {
		t.Fatalf("err = %v, want the transport's error", err)
	}
	if got := len(c.calls()); got != 1 {
		t.Errorf("transport calls = %d, want 1: the 1s retry cannot fit a 200ms deadline", got)
	}
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Errorf("returned after %v, want at once rather than sleeping into the deadline", d)
	}
}

func TestStopsWaitingWhenCancelled(t *testing.T) {
	tr := memory.New()
	tr.FailAll(errors.New("broker down"))
	c := &counting{next: tr.Publish}
	h := build(t, retry.Config{Backoff: outbox.Backoff{Initial: time.Hour, Max: time.Hour}}, c.publish)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() { done <- h(ctx, messages(t, 1)) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("retry kept waiting after its context was cancelled")
	}
}

func TestNegativeMaxRetriesPassesThrough(t *testing.T) {
	tr := memory.New()
	tr.FailNext(1, errors.New("blip"))
	c := &counting{next: tr.Publish}
	h := build(t, retry.Config{MaxRetries: -1}, c.publish)
	if err := h(context.Background(), messages(t, 1)); err == nil {
		t.Fatal("want the transport's error")
	}
	if got := len(c.calls()); got != 1 {
		t.Errorf("transport calls = %d, want 1", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   retry.Config
		field string
	}{
		{"defaults", retry.Config{}, ""},
		{"too many retries", retry.Config{MaxRetries: 101}, "MaxRetries"},
		{"negative initial", retry.Config{Backoff: outbox.Backoff{Initial: -1}}, "Backoff.Initial"},
		{"negative max", retry.Config{Backoff: outbox.Backoff{Max: -1}}, "Backoff.Max"},
		{"max below initial", retry.Config{Backoff: outbox.Backoff{Initial: time.Second, Max: time.Millisecond}}, "Backoff.Max"},
		{"shrinking multiplier", retry.Config{Backoff: outbox.Backoff{Multiplier: 0.5}}, "Backoff.Multiplier"},
		{"jitter of one", retry.Config{Backoff: outbox.Backoff{Jitter: 1}}, "Backoff.Jitter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.Middleware()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ce *outbox.ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field || ce.Component != "retry" {
				t.Fatalf("err = %v, want a retry ConfigError naming %s", err, tt.field)
			}
		})
	}
}

// TestRelayNeverSeesABlip runs the middleware in a relay: two failed calls are absorbed in
// process, so the store records no failure and the message goes out on its first claim.
func TestRelayNeverSeesABlip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	store := memstore.New()
	broker := memory.New()
	broker.FailNext(2, errors.New("connection reset"))
	mw, err := retry.Config{Backoff: fast}.Middleware()
	if err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.NewRelay(store, broker, outbox.Config{Middleware: []outbox.Middleware{mw}, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Add(ctx, outboxtest.NewMessages(3, "ORDER_PLACED", "")...); err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitErr := broker.WaitFor(ctx, 3)
	if err := relay.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if waitErr != nil {
		t.Fatal(waitErr)
	}
	if st := relay.Stats(); st.Failed != 0 || st.Published != 3 || st.Batches != 1 {
		t.Errorf("relay stats %+v, want 3 published in one batch and no failure recorded", st)
	}
}
