package outbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/zap"
)

func TestSlogLoggerWritesToTheHandler(t *testing.T) {
	var buf bytes.Buffer
	log := outbox.SlogLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	log.Debug("below the handler's level")
	log.Named("outbox.relay").With(zap.String("owner", "w1")).Warn("claim failed; retrying",
		zap.Error(errors.New("connection refused")), zap.Int("failures", 3))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d entries, want the one at or above Info:\n%s", len(lines), buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"level": "WARN", "msg": "claim failed; retrying", "logger": "outbox.relay",
		"owner": "w1", "error": "connection refused", "failures": float64(3)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (entry %s)", k, got[k], v, lines[0])
		}
	}
}

// The relay's own entries reach a slog handler: what a service logging with slog sets.
func TestRelayLogsThroughSlog(t *testing.T) {
	var buf syncBuffer
	r, err := outbox.NewRelay(memstore.New(), memory.New(), outbox.Config{Logger: outbox.SlogLogger(slog.New(slog.NewTextHandler(&buf, nil)))})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopRelay(t, r)
	if out := buf.String(); !strings.Contains(out, `msg="relay started"`) || !strings.Contains(out, "ordered=true") {
		t.Fatalf("slog handler got:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for the relay's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
