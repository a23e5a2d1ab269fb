package dedup_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/middleware/dedup"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func messages(t *testing.T, n int) []*outbox.Message {
	t.Helper()
	msgs := outboxtest.NewMessages(n, "ORDER_PLACED", "")
	if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func memoryStore(t *testing.T) *dedup.MemoryStore {
	t.Helper()
	s, err := dedup.NewMemoryStore(dedup.MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func build(t *testing.T, cfg dedup.Config, next outbox.Handler) outbox.Handler {
	t.Helper()
	mw, err := cfg.Middleware()
	if err != nil {
		t.Fatal(err)
	}
	return outbox.Chain(next, mw)
}

func TestSkipsWhatWasPublishedAndReportsSuccess(t *testing.T) {
	tr := memory.New()
	h := build(t, dedup.Config{Store: memoryStore(t)}, tr.Publish)
	msgs := messages(t, 3)

	if err := h(context.Background(), msgs[:2]); err != nil {
		t.Fatal(err)
	}
	// The first two come back, as after a lost ack, together with a new one.
	if err := h(context.Background(), msgs); err != nil {
		t.Fatalf("second publish: %v, want nil so the relay acks the skipped messages", err)
	}
	got := outboxtest.IDs(tr.Received())
	want := outboxtest.IDs(msgs)
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("transport received %v, want each of %v once", got, want)
	}
}

func TestRecordsOnlyWhatSucceeded(t *testing.T) {
	tr := memory.New()
	h := build(t, dedup.Config{Store: memoryStore(t)}, tr.Publish)
	msgs := messages(t, 2)
	tr.FailIDs(errors.New("throttled"), msgs[1].ID)

	err := h(context.Background(), msgs)
	var be *outbox.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[msgs[1].ID] == nil {
		t.Fatalf("err = %v, want the transport's BatchError naming %s", err, msgs[1].ID)
	}
	tr.Heal()
	if err := h(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	got := outboxtest.IDs(tr.Received())
	if len(got) != 2 || got[1] != msgs[1].ID {
		t.Errorf("received %v: the message that failed must be published on its retry, the other not again", got)
	}
}

func TestWholeFailureSparesSkippedMessages(t *testing.T) {
	tr := memory.New()
	h := build(t, dedup.Config{Store: memoryStore(t)}, tr.Publish)
	msgs := messages(t, 2)
	if err := h(context.Background(), msgs[:1]); err != nil {
		t.Fatal(err)
	}
	down := outbox.Permanent(errors.New("queue deleted"))
	tr.FailNext(1, down)

	err := h(context.Background(), msgs)
	var be *outbox.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a BatchError so the skipped message is still acked", err)
	}
	if len(be.Failed) != 1 || !errors.Is(be.Failed[msgs[1].ID], down) || !outbox.IsPermanent(be.Failed[msgs[1].ID]) {
		t.Errorf("failed = %v, want only %s with the permanent error", be.Failed, msgs[1].ID)
	}
	if err := h(context.Background(), nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
}

// flakyStore fails on demand, to show that a broken dedup store never stops publishing.
type flakyStore struct {
	dedup.Store
	seenErr, markErr error
}

func (s *flakyStore) Seen(ctx context.Context, ids []string) (map[string]bool, error) {
	if s.seenErr != nil {
		return nil, s.seenErr
	}
	return s.Store.Seen(ctx, ids)
}

func (s *flakyStore) Mark(ctx context.Context, ids []string, ttl time.Duration) error {
	if s.markErr != nil {
		return s.markErr
	}
	return s.Store.Mark(ctx, ids, ttl)
}

func TestBrokenStoreNeverBlocksPublishing(t *testing.T) {
	obs, logs := observer.New(zap.WarnLevel)
	tr := memory.New()
	store := &flakyStore{Store: memoryStore(t), seenErr: errors.New("redis down"), markErr: errors.New("redis down")}
	h := build(t, dedup.Config{Store: store, Logger: zap.New(obs)}, tr.Publish)
	msgs := messages(t, 2)

	if err := h(context.Background(), msgs); err != nil {
		t.Fatalf("publish with a broken store: %v, want nil", err)
	}
	if err := h(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if got := tr.Len(); got != 4 {
		t.Errorf("published %d, want 4: without a store every batch goes out", got)
	}
	if got := logs.FilterMessageSnippet("lookup failed").Len(); got != 2 {
		t.Errorf("%d lookup warnings, want 2", got)
	}
	if got := logs.FilterMessageSnippet("could not record").Len(); got != 2 {
		t.Errorf("%d mark warnings, want 2", got)
	}
}

func TestValidate(t *testing.T) {
	s := memoryStore(t)
	tests := []struct {
		name  string
		cfg   dedup.Config
		field string
	}{
		{"defaults", dedup.Config{Store: s}, ""},
		{"no store", dedup.Config{}, "Store"},
		{"negative ttl", dedup.Config{Store: s, TTL: -time.Second}, "TTL"},
		{"tiny ttl", dedup.Config{Store: s, TTL: time.Millisecond}, "TTL"},
		{"negative timeout", dedup.Config{Store: s, Timeout: -1}, "Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.Middleware()
			checkConfigErr(t, err, tt.field)
		})
	}
	_, err := dedup.NewMemoryStore(dedup.MemoryConfig{MaxEntries: -1})
	checkConfigErr(t, err, "MaxEntries")
	_, err = dedup.NewRedisStore(dedup.RedisConfig{})
	checkConfigErr(t, err, "Client")
}

func checkConfigErr(t *testing.T, err error, field string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var ce *outbox.ConfigError
	if !errors.As(err, &ce) || ce.Field != field || ce.Component != "dedup" {
		t.Fatalf("err = %v, want a dedup ConfigError naming %s", err, field)
	}
}
