package logging_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/middleware/logging"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T, cfg logging.Config, n int) (outbox.Handler, *memory.Transport, []*outbox.Message, *observer.ObservedLogs) {
	t.Helper()
	obs, logs := observer.New(zap.DebugLevel)
	cfg.Logger = zap.New(obs)
	mw, err := cfg.Middleware()
	if err != nil {
		t.Fatal(err)
	}
	msgs := outboxtest.NewMessages(n, "ORDER_PLACED", "order-1")
	for _, m := range msgs {
		m.Payload = []byte(`{"card":"4111 1111 1111 1111"}`)
	}
	if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	broker := memory.New()
	return outbox.Chain(broker.Publish, mw), broker, msgs, logs
}

func TestLevelsAndFields(t *testing.T) {
	h, broker, msgs, logs := setup(t, logging.Config{}, 4)
	for i, m := range msgs {
		// A key each: the memory transport stops a key at its first failure, and these
		// messages are meant to fail each for its own reason.
		m.Key = fmt.Sprint("order-", i)
	}
	msgs[2].Attempts = 4 // its fifth and last attempt
	broker.FailIDs(errors.New("throttled"), msgs[1].ID, msgs[2].ID)
	broker.FailIDs(outbox.Permanent(errors.New("message too large")), msgs[3].ID)

	if err := h(backend.WithMaxAttempts(context.Background(), 5), msgs); err == nil {
		t.Fatal("want the transport's BatchError")
	}

	warn := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warn) != 1 {
		t.Fatalf("%d warnings, want 1 (the retryable failure): %v", len(warn), warn)
	}
	f := warn[0].ContextMap()
	if f["id"] != msgs[1].ID || f["type"] != "ORDER_PLACED" || f["key"] != "order-1" || f["attempt"] != int64(1) || f["error"] != "throttled" {
		t.Errorf("warning fields = %v", f)
	}
	if warn[0].LoggerName != "outbox.publish" {
		t.Errorf("logger name %q", warn[0].LoggerName)
	}

	dead := logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(dead) != 2 {
		t.Fatalf("%d errors, want 2 (attempts exhausted, permanent): %v", len(dead), dead)
	}
	byID := map[string]map[string]any{}
	for _, e := range dead {
		byID[e.ContextMap()["id"].(string)] = e.ContextMap()
	}
	if f := byID[msgs[2].ID]; f == nil || f["attempt"] != int64(5) || f["permanent"] != false {
		t.Errorf("exhausted message fields = %v", f)
	}
	if f := byID[msgs[3].ID]; f == nil || f["permanent"] != true || f["error"] != "message too large" {
		t.Errorf("permanent failure fields = %v", f)
	}

	batch := logs.FilterLevelExact(zapcore.DebugLevel).FilterMessage("batch publish failed").All()
	if len(batch) != 1 {
		t.Fatalf("%d batch lines, want 1", len(batch))
	}
	if f := batch[0].ContextMap(); f["batch"] != int64(4) || f["published"] != int64(1) || f["failed"] != int64(3) {
		t.Errorf("batch fields = %v", f)
	}

	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, "4111") {
				t.Errorf("payload leaked into %q field %s", e.Message, k)
			}
		}
	}
}

func TestWholeBatchFailureLogsEachMessage(t *testing.T) {
	h, broker, msgs, logs := setup(t, logging.Config{}, 3)
	broker.FailNext(1, errors.New("connection refused"))
	if err := h(context.Background(), msgs); err == nil {
		t.Fatal("want the transport's error")
	}
	if got := logs.FilterLevelExact(zapcore.WarnLevel).Filter(func(e observer.LoggedEntry) bool {
		return e.ContextMap()["error"] == "connection refused"
	}).Len(); got != 3 {
		t.Errorf("%d warnings, want one per message", got)
	}
}

func TestIncludePayload(t *testing.T) {
	h, broker, msgs, logs := setup(t, logging.Config{IncludePayload: true}, 1)
	broker.FailIDs(nil, msgs[0].ID)
	_ = h(context.Background(), msgs)
	warn := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warn) != 1 || warn[0].ContextMap()["payload"] != string(msgs[0].Payload) {
		t.Fatalf("warnings = %v, want the payload included", warn)
	}
}

func TestSuccessIsQuiet(t *testing.T) {
	h, _, msgs, logs := setup(t, logging.Config{}, 2)
	if err := h(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if got := logs.FilterLevelExact(zapcore.DebugLevel).Len(); got != 1 || logs.Len() != 1 {
		t.Errorf("%d lines, want one debug line for the batch: %v", logs.Len(), logs.All())
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		cfg   logging.Config
		field string
	}{
		{logging.Config{}, "Logger"},
	} {
		_, err := tt.cfg.Middleware()
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field || ce.Component != "logging" {
			t.Errorf("err = %v, want a logging ConfigError naming %s", err, tt.field)
		}
	}
}
