package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/sqlite"
)

// These tests need no server: they run the commands against a SQLite file.

func sqliteStore(t *testing.T) (url string, store *sqlite.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.db")
	url = "sqlite:" + path
	if code, _, stderr := runCLI(t, nil, "migrate", "--store", url); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, stderr)
	}
	store, err := sqlite.New(context.Background(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return url, store
}

// add writes msgs in a transaction of their own.
func add(t *testing.T, store *sqlite.Store, msgs ...*outbox.Message) {
	t.Helper()
	ctx := context.Background()
	tx, err := store.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Add(ctx, tx, msgs...); err != nil {
		_ = tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// kill makes msgs dead, as a relay does when their publish fails for good.
func kill(t *testing.T, store outbox.Store, msgs []*outbox.Message, reason string) {
	t.Helper()
	ctx := context.Background()
	claimed, err := store.Claim(ctx, outbox.ClaimRequest{Token: "test", Limit: 1000, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, m := range msgs {
		want[m.ID] = true
	}
	var failures []outbox.Failure
	var others []string
	for _, m := range claimed {
		if want[m.ID] {
			failures = append(failures, outbox.Failure{ID: m.ID, Error: reason, Dead: true})
		} else {
			others = append(others, m.ID)
		}
	}
	if len(failures) != len(msgs) {
		t.Fatalf("claimed %d of the %d messages to kill", len(failures), len(msgs))
	}
	if _, err := store.Nack(ctx, "test", failures); err != nil {
		t.Fatal(err)
	}
	if len(others) > 0 { // release the rest at once
		var release []outbox.Failure
		for _, id := range others {
			release = append(release, outbox.Failure{ID: id, Release: true})
		}
		if _, err := store.Nack(ctx, "test", release); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStatusAndDeadLetters(t *testing.T) {
	url, store := sqliteStore(t)
	ctx := context.Background()
	pending := outboxtest.NewMessages(3, "ORDER_PLACED", "")
	dead := append(outboxtest.NewMessages(2, "ORDER_PAID", "order-7"), outboxtest.NewMessages(1, "ORDER_SHIPPED", "order-9")...)
	add(t, store, append(append([]*outbox.Message{}, dead...), pending...)...)
	kill(t, store, dead, "sqs: queue does not exist")

	code, stdout, stderr := runCLI(t, nil, "status", "--store", url, "--json")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, stderr)
	}
	var report statusReport
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("status JSON %q: %v", stdout, err)
	}
	if report.Pending != 3 || report.Dead != 3 || report.Delivered != 0 || report.OldestPending == nil {
		t.Errorf("status %+v, want 3 pending, 3 dead and an oldest pending time", report)
	}
	if len(report.StalledKeys) != 2 || report.StalledKeys[0].Key != "order-7" || report.StalledKeys[0].Dead != 2 ||
		report.StalledKeys[0].HeadID != dead[0].ID || report.StalledKeys[0].LastError != "sqs: queue does not exist" ||
		report.StalledKeys[1].Key != "order-9" {
		t.Errorf("stalled keys %+v, want order-7 (2 dead, head %s) then order-9", report.StalledKeys, dead[0].ID)
	}

	code, stdout, _ = runCLI(t, nil, "status", "--store", url)
	if code != 0 || !strings.Contains(stdout, "dead            3") || !strings.Contains(stdout, "order-7") {
		t.Errorf("status table (exit %d):\n%s", code, stdout)
	}

	code, stdout, _ = runCLI(t, nil, "dead", "list", "--store", url, "--key", "order-7", "--json")
	var listed []deadLetter
	if err := json.Unmarshal([]byte(stdout), &listed); code != 0 || err != nil {
		t.Fatalf("dead list: exit %d, %v: %s", code, err, stdout)
	}
	if len(listed) != 2 || listed[0].ID != dead[0].ID || listed[0].LastError != "sqs: queue does not exist" || !jsonEqual(listed[0].Payload, dead[0].Payload) {
		t.Errorf("dead list --key order-7: %+v", listed)
	}
	code, stdout, _ = runCLI(t, nil, "dead", "list", "--store", url, "--type", "ORDER_SHIPPED")
	if code != 0 || !strings.Contains(stdout, dead[2].ID) || strings.Contains(stdout, dead[0].ID) {
		t.Errorf("dead list --type table (exit %d):\n%s", code, stdout)
	}

	code, stdout, _ = runCLI(t, nil, "dead", "requeue", "--store", url, "--id", dead[0].ID)
	if code != 0 || !strings.Contains(stdout, "requeued 1 ") {
		t.Errorf("requeue --id: exit %d: %s", code, stdout)
	}
	code, stdout, _ = runCLI(t, nil, "dead", "purge", "--store", url, "--all")
	if code != 0 || !strings.Contains(stdout, "purged 2 ") {
		t.Errorf("purge --all: exit %d: %s", code, stdout)
	}
	counts, err := store.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Pending != 4 || counts.Dead != 0 {
		t.Errorf("after requeue and purge: %+v, want 4 pending, 0 dead", counts)
	}
}

// syncBuffer is a bytes.Buffer safe for the relay's goroutines and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRelayToMemoryPrintsEnvelopes(t *testing.T) {
	url, store := sqliteStore(t)
	msgs := outboxtest.NewMessages(25, "USER_CREATED", "")
	add(t, store, msgs...)
	var stdout, stderr syncBuffer
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- run(ctx, e, []string{"relay", "--store", url, "--transport", "memory", "--listen", "off", "--poll-interval", "20ms"})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(stdout.String(), "\n") < len(msgs) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("relay exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != len(msgs) {
		t.Fatalf("%d envelopes printed, want %d:\n%s", len(lines), len(msgs), stdout.String())
	}
	seen := map[string]bool{}
	for _, line := range lines {
		m, err := backend.DecodeEnvelope([]byte(line))
		if err != nil || m.Type != "USER_CREATED" {
			t.Fatalf("envelope %q: %v", line, err)
		}
		seen[m.ID] = true
	}
	for _, m := range msgs {
		if !seen[m.ID] {
			t.Errorf("message %s was not printed", m.ID)
		}
	}
	// The logs are JSON lines, and the relay said it drained.
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
	if !strings.Contains(stderr.String(), `"msg":"relay drained"`) {
		t.Errorf("logs lack the drain line:\n%s", stderr.String())
	}
	counts, err := store.Counts(context.Background())
	if err != nil || counts.Pending != 0 {
		t.Errorf("after the relay: %+v, %v; want nothing pending", counts, err)
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

func claimNow(owner string) outbox.ClaimRequest {
	return outbox.ClaimRequest{Token: owner, Limit: 10, Lease: time.Minute}
}

// status --json has every field the docs list, oldest_pending too: null when nothing is pending.
func TestStatusJSONHasEveryField(t *testing.T) {
	url, _ := sqliteStore(t)
	code, stdout, stderr := runCLI(t, nil, "status", "--store", url, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &fields); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"store", "pending", "delivered", "dead", "oldest_pending", "oldest_pending_age_seconds", "stalled_keys"} {
		if _, ok := fields[name]; !ok {
			t.Errorf("status --json lacks %q: %s", name, stdout)
		}
	}
	if string(fields["oldest_pending"]) != "null" {
		t.Errorf("oldest_pending = %s with nothing pending, want null", fields["oldest_pending"])
	}
}
