package mysql

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

// A second store of the process over the same table is woken by the first one's Execute, and
// Close ends every channel Listen returned.
func TestListenAcrossStoresAndClose(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	other, err := New(ctx, Config{URL: outbox.Secret(testURL()), Table: s.cfg.Table})
	if err != nil {
		t.Fatal(err)
	}
	signals, err := other.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Execute(ctx, s, func(context.Context, *sql.Tx) (int, error) { return 0, nil }, &outbox.Message{Type: "T", Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-signals:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up from the other store's Execute")
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, open := <-signals:
		if open {
			t.Fatal("a signal after Close, want the channel closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close left the Listen channel open")
	}
	if _, err := other.Listen(ctx); err == nil {
		t.Fatal("Listen on a closed store succeeded")
	}
}
