package outboxfx_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxfx"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
)

// lockedBuffer is a bytes.Buffer safe for the relay's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A service that logs with slog provides a *slog.Logger and no *zap.Logger: the relay logs
// through it.
func TestRelayLogsThroughTheAppsSlogLogger(t *testing.T) {
	var logs lockedBuffer
	app := fxtest.New(t,
		fx.Supply(fx.Annotate(memstore.New(), fx.As(new(outbox.Store)))),
		fx.Supply(fx.Annotate(memory.New(), fx.As(new(outbox.Transport)))),
		fx.Supply(slog.New(slog.NewTextHandler(&logs, nil)), fast),
		fx.NopLogger,
		outboxfx.Module,
	)
	app.RequireStart()
	app.RequireStop()
	if out := logs.String(); !strings.Contains(out, `msg="relay started"`) || !strings.Contains(out, `msg="relay stopped"`) {
		t.Fatalf("the slog handler got:\n%s", out)
	}
}
