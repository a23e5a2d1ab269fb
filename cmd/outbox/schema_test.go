package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/storeurl"
	"github.com/txoutbox/outbox/store/sqlite"
)

// A store whose table was never created: relay, status and dead say so at once, with what to
// run, instead of retrying "no such table" for ever.
func TestCommandsNameAMissingTable(t *testing.T) {
	url := "sqlite:" + filepath.Join(t.TempDir(), "never-migrated.db")
	for _, args := range [][]string{
		{"relay", "--store", url, "--transport", "memory", "--listen", "off"},
		{"status", "--store", url},
		{"dead", "list", "--store", url},
	} {
		done := make(chan struct{})
		var (
			code   int
			stderr string
		)
		go func() {
			defer close(done)
			code, _, stderr = runCLI(t, nil, args...)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("outbox %s still running after 10s with no table", args[0])
		}
		if code == 0 || !strings.Contains(stderr, "table outbox does not exist: create it with `outbox migrate`") {
			t.Errorf("outbox %s: exit %d, stderr %q: want a failure naming the missing table and outbox migrate", strings.Join(args, " "), code, stderr)
		}
	}
}

// The relay is handed the store itself, not the commands' view of it: the relay looks for the
// store's wake-ups (Notifier), retention and schema check by type.
func TestRelayGetsTheStoresCapabilities(t *testing.T) {
	ctx := context.Background()
	target, err := storeurl.Parse("sqlite:"+filepath.Join(t.TempDir(), "x.db"), storeurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o, err := openStore(ctx, target, "sqlite:x.db")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = o.Close() }()
	var relayStore outbox.Store = o.backend
	if _, ok := relayStore.(outbox.Notifier); !ok {
		t.Error("the relay's store is no Notifier: the relay would only poll")
	}
	if _, ok := relayStore.(outbox.Retention); !ok {
		t.Error("the relay's store is no Retention: --retain-delivered would delete nothing")
	}
	if _, ok := relayStore.(outbox.SchemaChecker); !ok {
		t.Error("the relay's store is no SchemaChecker: a missing table would be retried for ever")
	}
}

// migrate says what it did: created the table, found it, or found another table of that name.
func TestMigrateSaysWhatItDid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	url := "sqlite:" + path
	for _, want := range []string{
		"created the table and indexes of " + url + " (outbox) at schema version 1: the schema is up to date",
		url + " (outbox) exists at schema version 1: the schema is up to date",
	} {
		if code, out, stderr := runCLI(t, nil, "migrate", "--store", url); code != 0 || strings.TrimSpace(out) != want {
			t.Errorf("migrate: exit %d, stdout %q, stderr %q: want %q", code, out, stderr, want)
		}
	}
	s, err := sqlite.New(context.Background(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if _, err := s.DB().Exec("CREATE TABLE events (id TEXT)"); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, nil, "migrate", "--store", url, "--table", "events")
	if code == 0 || !strings.Contains(stderr, "table events is not an outbox table (no column seq, type,") {
		t.Errorf("migrate over a foreign table: exit %d, stderr %q", code, stderr)
	}
}

// A relay whose broker is unreachable at start serves /healthz at once (503 saying what it
// waits for), and a SIGINT while it waits exits 0 promptly with a log line.
func TestRelayWaitingForItsBrokerAnswersHealthzAndStops(t *testing.T) {
	bin := buildBinary(t)
	url := "sqlite:" + filepath.Join(t.TempDir(), "app.db")
	if code, _, stderr := runCLI(t, nil, "migrate", "--store", url); code != 0 {
		t.Fatalf("migrate: %s", stderr)
	}
	dead := freeLoopbackAddr(t) // nothing listens there
	p := launchRelay(t, bin, os.Environ(), "--store", url, "--transport", "nats", "--nats-url", "nats://"+dead)
	code, body := httpGet(t, "http://"+p.addr+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "relay not running: connecting to the transport (nats)") {
		t.Fatalf("/healthz while the broker is unreachable: %d %q", code, body)
	}
	begin := time.Now()
	if code := p.signal(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d after SIGINT:\n%s", code, p.logs.String())
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("SIGINT took %v to stop the relay", took)
	}
	if !strings.Contains(p.logs.String(), "signal received while connecting to the transport") {
		t.Errorf("no log line for the signal:\n%s", p.logs.String())
	}
}

// freeLoopbackAddr returns a loopback address nothing listens on.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
