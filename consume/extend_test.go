package consume_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
)

// While a slow handler runs its delivery is extended every ExtendInterval, a failed extension
// is counted and the next one still comes, and no extension follows the settling. A settler
// that is no Extender is never extended.
func TestExtendWhileHandlerRuns(t *testing.T) {
	const interval = 20 * time.Millisecond
	f := newFake()
	slow := func(ref string) int { return f.count("extend", ref) }
	c := start(t, f, consume.Config{Concurrency: 3, ExtendInterval: interval,
		Handler: func(_ context.Context, m *outbox.Message) error {
			if strings.HasPrefix(m.ID, "slow") && !f.until(func() bool { return slow(m.ID) >= 3 }) {
				return errors.New("not extended 3 times")
			}
			return nil
		}})
	extendable := func(ref string, err error) consume.Delivery {
		d := f.delivery(t, ref)
		d.Settler = extSettler{settler: d.Settler.(*settler), extendErr: err}
		return d
	}
	f.push(nil, extendable("slow", nil))
	f.push(nil, extendable("slow-failing", errors.New("receipt expired")))
	f.push(nil, f.delivery(t, "plain"))
	f.waitFor(t, "every delivery acked", func() bool { return f.count("ack", "") == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}

	f.mu.Lock()
	received := f.received["slow"]
	f.mu.Unlock()
	for k, e := range f.of("extend", "slow") {
		if earliest := received.Add(time.Duration(k+1) * interval); e.at.Before(earliest) {
			t.Errorf("extension %d at %v after the receive, want at least %v", k+1, e.at.Sub(received), time.Duration(k+1)*interval)
		}
	}
	for _, ref := range []string{"slow", "slow-failing"} {
		ack := f.index("ack", ref)
		for i, e := range f.snapshot() {
			if e.kind == "extend" && e.ref == ref && i > ack {
				t.Errorf("%s extended after its ack", ref)
			}
		}
	}
	s := c.Stats()
	if ok, failed := int64(f.count("extend", "slow")), int64(f.count("extend", "slow-failing")); s.Extended != ok || s.ExtendErrors != failed || ok < 3 || failed < 3 {
		t.Errorf("stats %+v, want Extended %d (at least 3) and ExtendErrors %d (at least 3)", s, ok, failed)
	}
}
