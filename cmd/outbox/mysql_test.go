package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/mysql"
)

// mysqlURL is the test MySQL or MariaDB (scripts/services/mariadb creates the user and database).
func mysqlURL() string {
	if u := os.Getenv("OUTBOX_TEST_MYSQL_URL"); u != "" {
		return u
	}
	return "mysql://outbox:outbox@127.0.0.1:3306/outbox_test"
}

// TestMySQLStore: migrate creates a table of its own, the relay drains it to the memory
// transport, status counts it, and a missing table is named with what to run.
func TestMySQLStore(t *testing.T) {
	ctx := context.Background()
	var b [4]byte
	_, _ = rand.Read(b[:])
	table := "cli_" + hex.EncodeToString(b[:])
	store, err := mysql.New(ctx, mysql.Config{URL: outbox.Secret(mysqlURL()), Table: table})
	if err != nil {
		outboxtest.NeedService(t, "MySQL or MariaDB at "+mysqlURL(), err)
	}
	defer func() { _ = store.Close() }()
	t.Cleanup(func() {
		_, _ = store.DB().ExecContext(context.Background(), "DROP TABLE IF EXISTS `"+table+"`, `"+table+"_keys`")
	})
	url := mysqlURL()
	if code, _, stderr := runCLI(t, nil, "status", "--store", url, "--table", table); code == 0 ||
		!strings.Contains(stderr, "does not exist: create it with `outbox migrate`") {
		t.Fatalf("status before migrate: exit %d, %q", code, stderr)
	}
	if code, out, stderr := runCLI(t, nil, "migrate", "--store", url, "--table", table); code != 0 || !strings.Contains(out, "created the table and indexes") {
		t.Fatalf("migrate: exit %d, %q, %q", code, out, stderr)
	}
	msgs := outboxtest.NewMessages(30, "ORDER_PLACED", "order-7")
	tx, err := store.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Add(ctx, tx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr syncBuffer
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan int)
	go func() {
		done <- run(rctx, e, []string{"relay", "--store", url, "--table", table, "--transport", "memory", "--listen", "off", "--poll-interval", "20ms"})
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
		t.Fatalf("%d envelopes printed, want %d:\n%s", len(lines), len(msgs), stderr.String())
	}
	for i, line := range lines { // one key: in write order
		m, err := backend.DecodeEnvelope([]byte(line))
		if err != nil || m.ID != msgs[i].ID {
			t.Fatalf("envelope %d is %q (%v), want message %s", i, line, err, msgs[i].ID)
		}
	}
	code, out, errOut := runCLI(t, nil, "status", "--store", url, "--table", table)
	if code != 0 || !strings.Contains(out, "pending         0") || strings.Contains(out, "outbox:outbox@") {
		t.Fatalf("status: exit %d:\n%s%s", code, out, errOut)
	}
}
