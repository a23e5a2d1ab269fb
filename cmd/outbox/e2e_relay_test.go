package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

// harness is what both end-to-end tests share: a schema with an outbox and an orders table, a
// queue, the built binary and its environment, and a store to write events with.
type harness struct {
	t        *testing.T
	ctx      context.Context
	schema   string
	client   *awssqs.Client
	queue    string
	bin      string
	environ  []string
	store    *postgres.Store
	ordersTb string
}

func newHarness(t *testing.T, fifo bool) *harness {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and runs it against PostgreSQL and SQS")
	}
	// Services first, so that a missing one skips before the build; then the build, outside
	// the deadline of the test's own work.
	setup, cancelSetup := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelSetup()
	schema := pgSchema(t, setup)
	client := sqsClient(t, setup)
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	h := &harness{t: t, ctx: ctx, bin: bin, schema: schema, client: client}
	h.queue = createQueue(t, ctx, h.client, fifo)
	h.environ = append(os.Environ(),
		"OUTBOX_STORE="+postgresURL(),
		"OUTBOX_SCHEMA="+h.schema,
		"OUTBOX_SQS_QUEUE_URL="+h.queue,
		"OUTBOX_SQS_ENDPOINT="+sqsEndpoint(),
		"OUTBOX_SQS_REGION=us-east-1",
		"OUTBOX_SQS_ACCESS_KEY_ID=test",
		"OUTBOX_SQS_SECRET_ACCESS_KEY=test",
		"AWS_EC2_METADATA_DISABLED=true",
	)
	if code, out := outboxCmd(t, h.bin, h.environ, "migrate"); code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("migrate: exit %d: %s", code, out)
	}
	store, err := postgres.New(ctx, postgres.Config{URL: postgresURL(), Schema: h.schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	h.store = store
	h.ordersTb = pgx.Identifier{h.schema, "orders"}.Sanitize()
	if _, err := store.Pool().Exec(ctx, "CREATE TABLE "+h.ordersTb+" (id bigserial PRIMARY KEY, n int NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return h
}

// write commits an order and its ORDER_PLACED event with Execute and returns the event's ID.
func (h *harness) write(n int, key string) (string, error) {
	m := &outbox.Message{Type: "ORDER_PLACED", Key: key, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
	_, err := postgres.Execute(h.ctx, h.store, func(ctx context.Context, tx pgx.Tx) (int64, error) {
		var id int64
		return id, tx.QueryRow(ctx, "INSERT INTO "+h.ordersTb+" (n) VALUES ($1) RETURNING id", n).Scan(&id)
	}, m)
	return m.ID, err
}

// status runs `outbox status --json`.
func (h *harness) status() statusReport {
	h.t.Helper()
	code, out := outboxCmd(h.t, h.bin, h.environ, "status", "--json")
	var r statusReport
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil {
		h.t.Fatalf("status --json: exit %d, %v: %s", code, err, out)
	}
	return r
}

// TestRelayEndToEnd: migrate, relay to SQS while events are written, SIGTERM mid-stream (clean
// exit 0), writes go on, a restarted relay delivers the rest — every event arrives — and a
// dead letter requeued with `outbox dead requeue` is delivered too; status reports it all.
func TestRelayEndToEnd(t *testing.T) {
	h := newHarness(t, false)
	ctx, bin, environ, store, schema := h.ctx, h.bin, h.environ, h.store, h.schema
	write, status := h.write, h.status

	// A dead letter from an earlier outage, on key "order-dead", before any relay runs.
	deadID, err := write(-1, "order-dead")
	if err != nil {
		t.Fatal(err)
	}
	kill(t, store, []*outbox.Message{{ID: deadID}}, "sqs: AWS.SimpleQueueService.NonExistentQueue")
	if r := status(); r.Dead != 1 || r.Pending != 0 || len(r.StalledKeys) != 1 || r.StalledKeys[0].Key != "order-dead" || r.StalledKeys[0].HeadID != deadID {
		t.Fatalf("status before the relay: %+v", r)
	}

	in := receive(ctx, h.client, h.queue)
	defer in.close()

	// Writers run all along, across the relay's stop and restart.
	const events = 600
	var (
		mu      sync.Mutex
		written []string
		wg      sync.WaitGroup
	)
	writeErr := make(chan error, 1)
	wg.Go(func() {
		for n := range events {
			id, err := write(n, "")
			if err != nil {
				writeErr <- err
				return
			}
			mu.Lock()
			written = append(written, id)
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	})

	first := startRelay(t, bin, environ)
	if code, body := httpGet(t, "http://"+first.addr+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz: %d %q, want 200 ok", code, body)
	}
	if !in.waitFor(30*time.Second, func() bool { return in.count() >= 100 }) {
		t.Fatalf("only %d events arrived while the relay ran:\n%s", in.count(), first.logs.String())
	}
	code, body := httpGet(t, "http://"+first.addr+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "outbox_relay_published_total ") || !strings.Contains(body, "outbox_relay_publish_duration_seconds_count ") ||
		!strings.Contains(body, `outbox_messages{status="dead"} 1`) || !strings.Contains(body, "outbox_store_up 1") {
		t.Errorf("metrics (%d) lack the relay's and the store's series:\n%s", code, body)
	}
	if code := first.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("relay exit code %d after SIGTERM, want 0:\n%s", code, first.logs.String())
	}
	if !strings.Contains(first.logs.String(), `"msg":"relay drained"`) {
		t.Errorf("the relay did not log its drain:\n%s", first.logs.String())
	}

	wg.Wait()
	select {
	case err := <-writeErr:
		t.Fatal(err)
	default:
	}
	// The relay is down and every event is written: status counts what the table holds.
	var pending int64
	if err := store.Pool().QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "outbox"}.Sanitize()+" WHERE status = 'pending'").Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if r := status(); r.Pending != pending || r.Dead != 1 || (pending > 0) != (r.OldestPending != nil) {
		t.Errorf("status with the relay stopped: %+v, want %d pending and 1 dead", r, pending)
	}
	t.Logf("%d of %d events arrived before SIGTERM drained the relay; %d pending", in.count(), events, pending)

	second := startRelay(t, bin, environ)
	all := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range written {
			if !in.has(id) {
				return false
			}
		}
		return true
	}
	if !in.waitFor(60*time.Second, all) {
		t.Fatalf("%d distinct events arrived, want all %d:\n%s", in.count(), events, second.logs.String())
	}
	if in.has(deadID) {
		t.Fatal("the dead letter was published before it was requeued")
	}

	code, out := outboxCmd(t, bin, environ, "dead", "list", "--json")
	var listed []deadLetter
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil || len(listed) != 1 || listed[0].ID != deadID ||
		listed[0].LastError != "sqs: AWS.SimpleQueueService.NonExistentQueue" {
		t.Fatalf("dead list: exit %d, %v: %s", code, err, out)
	}
	if code, out := outboxCmd(t, bin, environ, "dead", "requeue", "--id", deadID); code != 0 || !strings.Contains(out, "requeued 1 ") {
		t.Fatalf("dead requeue: exit %d: %s", code, out)
	}
	if !in.waitFor(30*time.Second, func() bool { return in.has(deadID) }) {
		t.Fatalf("the requeued message never arrived:\n%s", second.logs.String())
	}
	// Acknowledged messages are deleted: the store ends empty. The ack follows the publish, so
	// give it a moment.
	deadline := time.Now().Add(10 * time.Second)
	r := status()
	for (r.Pending != 0 || r.Dead != 0) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		r = status()
	}
	if r.Pending != 0 || r.Dead != 0 || len(r.StalledKeys) != 0 || r.OldestPending != nil {
		t.Errorf("final status %+v, want an empty outbox", r)
	}

	if code := second.signal(t, syscall.SIGINT); code != 0 {
		t.Fatalf("relay exit code %d after SIGINT, want 0:\n%s", code, second.logs.String())
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	t.Logf("the consumer survived %d failed receives", in.receiveErrors)
	for _, err := range in.errs {
		t.Error(err)
	}
	if len(in.seen) != events+1 {
		t.Errorf("%d distinct IDs arrived, want %d (no strangers)", len(in.seen), events+1)
	}
}
