package console_test

import (
	"context"
	"database/sql"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/console"
	"github.com/txoutbox/outbox/store/sqlite"
	transport "github.com/txoutbox/outbox/transport/memory"
)

// TestSQLiteEndToEnd runs the console over a real database: the overview, the filtered list,
// an API requeue that a running relay delivers, and a purge through the confirm page.
func TestSQLiteEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.EnsureSchema(ctx); err != nil {
		t.Fatal(err)
	}
	add := func(ctx context.Context, msgs ...*outbox.Message) error {
		_, err := sqlite.Execute(ctx, st, func(context.Context, *sql.Tx) (struct{}, error) { return struct{}{}, nil }, msgs...)
		return err
	}
	ids := seed(t, st, add, 0, mixed...)

	c := serve(t, console.Config{Outboxes: []console.Outbox{{Name: "orders", Store: st}}, Token: token})
	status, body := c.get("")
	wantStatus(t, "overview", status, http.StatusOK, body)
	if !strings.Contains(body, `data-pending="0"`) || !strings.Contains(body, `data-dead="4"`) {
		t.Errorf("overview:\n%s", body)
	}
	_, body = c.get("outboxes/orders/dead?key=k1&error=timeout")
	if rows(body) != 2 || !strings.Contains(body, ids[0]) || !strings.Contains(body, ids[2]) {
		t.Errorf("filtered list:\n%s", body)
	}
	_, body = c.get("outboxes/orders/dead/" + ids[3] + "?payload=1")
	if !strings.Contains(body, payloadMarker) || !strings.Contains(body, "permanent: message too large") {
		t.Errorf("detail:\n%s", body)
	}

	broker := transport.New()
	relay, err := outbox.NewRelay(st, broker, outbox.Config{PollInterval: 20 * time.Millisecond, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := relay.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	status, v := c.api("api/outboxes/orders/dead/requeue", `{"type":"ORDER_PLACED","expect":2}`, token)
	if status != http.StatusOK || v["requeued"] != 2.0 {
		t.Fatalf("api requeue = %d %v", status, v)
	}
	if err := broker.WaitFor(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for _, m := range broker.Received() {
		if m.ID != ids[0] && m.ID != ids[1] {
			t.Errorf("relay delivered %s, which was not requeued", m.ID)
		}
	}

	c.login()
	status, body = confirmAndPost(t, c, "purge", "type=ORDER_PAID", 2)
	wantStatus(t, "purge", status, http.StatusOK, body)
	if n := deadCount(t, st); n != 0 {
		t.Errorf("dead = %d after requeueing 2 and purging 2", n)
	}
}
