package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

const consoleTestToken = "console-cli-token-0123456789"

// inProcessConsole is `outbox console` running in a goroutine of the test.
type inProcessConsole struct {
	cancel context.CancelFunc
	done   chan int
	stderr *syncBuffer
	addr   string
}

// consoleAddrIn returns the address of the "serving the console" log line in logs, or "".
func consoleAddrIn(logs string) string {
	for _, line := range strings.Split(logs, "\n") {
		var entry struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "serving the console" {
			return entry.Addr
		}
	}
	return ""
}

// startConsoleInProcess runs `outbox console args…` with vars until it logs its address.
func startConsoleInProcess(t *testing.T, vars map[string]string, args ...string) *inProcessConsole {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &inProcessConsole{cancel: cancel, done: make(chan int, 1), stderr: &syncBuffer{}}
	e := &env{stdout: &syncBuffer{}, stderr: c.stderr, getenv: func(k string) string { return vars[k] }}
	go func() { c.done <- run(ctx, e, append([]string{"console"}, args...)) }()
	t.Cleanup(func() { cancel(); <-c.done })
	deadline := time.Now().Add(30 * time.Second)
	for c.addr == "" {
		c.addr = consoleAddrIn(c.stderr.String())
		select {
		case code := <-c.done:
			c.done <- code
			t.Fatalf("console exited %d before serving:\n%s", code, c.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("console never logged its address:\n%s", c.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

// stop ends the console as SIGTERM does and returns its exit code.
func (c *inProcessConsole) stop() int {
	c.cancel()
	code := <-c.done
	c.done <- code
	return code
}

// consoleDo sends a request to the console at addr and returns the status and body.
func consoleDo(t *testing.T, method, url, bearer, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestConsoleServesAndRequeuesWithToken(t *testing.T) {
	url, store := sqliteStore(t)
	var msgs []*outbox.Message
	for i := range 3 {
		m, err := outbox.NewMessage("ORDER_PLACED", map[string]int{"n": i})
		if err != nil {
			t.Fatal(err)
		}
		m.Key = "k"
		msgs = append(msgs, m)
	}
	add(t, store, msgs...)
	kill(t, store, msgs[:2], "broker said no")

	c := startConsoleInProcess(t, map[string]string{"OUTBOX_CONSOLE_TOKEN": consoleTestToken}, "--store", url, "--listen", "127.0.0.1:0")
	base := "http://" + c.addr + "/"

	code, body := consoleDo(t, "GET", base+"api/outboxes", "", "")
	if code != 200 {
		t.Fatalf("GET api/outboxes: %d %s", code, body)
	}
	var overview struct {
		Outboxes []struct {
			Name          string
			Pending, Dead int64
		}
	}
	if err := json.Unmarshal([]byte(body), &overview); err != nil {
		t.Fatal(err)
	}
	if len(overview.Outboxes) != 1 || overview.Outboxes[0].Name != "outbox" || overview.Outboxes[0].Pending != 1 || overview.Outboxes[0].Dead != 2 {
		t.Fatalf("overview: %s, want outbox with 1 pending and 2 dead", body)
	}
	if code, page := consoleDo(t, "GET", base, "", ""); code != 200 || !strings.Contains(page, "outbox") {
		t.Fatalf("GET /: %d %s", code, page)
	}

	requeue := base + "api/outboxes/outbox/dead/requeue"
	if code, body := consoleDo(t, "POST", requeue, "", `{"type":"ORDER_PLACED","expect":2}`); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Fatalf("requeue without the token: %d %s, want 401 or 403", code, body)
	}
	if code, body := consoleDo(t, "POST", requeue, "wrong-token-0123456789", `{"type":"ORDER_PLACED","expect":2}`); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Fatalf("requeue with a wrong token: %d %s, want 401 or 403", code, body)
	}
	if n := len(deadIDs(t, store)); n != 2 {
		t.Fatalf("refused requeues changed the store: %d dead, want 2", n)
	}
	code, body = consoleDo(t, "POST", requeue, consoleTestToken, `{"type":"ORDER_PLACED","expect":2}`)
	if code != 200 || jsonInt(t, body, "requeued") != 2 {
		t.Fatalf("requeue with the token: %d %s", code, body)
	}
	if n := len(deadIDs(t, store)); n != 0 {
		t.Fatalf("after requeue: %d dead, want 0", n)
	}
	if code := c.stop(); code != 0 {
		t.Fatalf("console exited %d on SIGTERM:\n%s", code, c.stderr.String())
	}
	if strings.Contains(c.stderr.String(), consoleTestToken) {
		t.Fatal("the logs show the token")
	}
}

// jsonInt is the number field of the JSON object body.
func jsonInt(t *testing.T, body, field string) int64 {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	n, _ := v[field].(float64)
	return int64(n)
}

// deadIDs lists the store's dead letters.
func deadIDs(t *testing.T, store outbox.Inspector) []string {
	t.Helper()
	dead, err := store.ListDead(context.Background(), outbox.DeadFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(dead))
	for i, m := range dead {
		ids[i] = m.ID
	}
	return ids
}

func TestConsoleWithoutTokenIsReadOnly(t *testing.T) {
	url, _ := sqliteStore(t)
	c := startConsoleInProcess(t, nil, "--store", url, "--listen", "127.0.0.1:0")
	code, body := consoleDo(t, "POST", "http://"+c.addr+"/api/outboxes/outbox/dead/requeue", consoleTestToken, `{"all":true}`)
	if code != http.StatusForbidden {
		t.Fatalf("requeue on a console without a token: %d %s, want 403", code, body)
	}
	if !strings.Contains(c.stderr.String(), "read-only") {
		t.Fatalf("the console did not say it is read-only:\n%s", c.stderr.String())
	}
}

func TestConsoleUsageErrors(t *testing.T) {
	url := "sqlite:" + t.TempDir() + "/none.db"
	tests := []struct {
		name string
		args []string
		vars map[string]string
		want string
	}{
		{"non-loopback without token", []string{"console", "--store", url, "--listen", "0.0.0.0:8081"}, nil, `"0.0.0.0" is not a loopback address: set OUTBOX_CONSOLE_TOKEN`},
		{"every interface without token", []string{"console", "--store", url, "--listen", ":8081"}, nil, "is not a loopback address"},
		{"short token", []string{"console", "--store", url}, map[string]string{"OUTBOX_CONSOLE_TOKEN": "short"}, "OUTBOX_CONSOLE_TOKEN: is shorter than 16 bytes"},
		{"bad listen", []string{"console", "--store", url, "--listen", "nowhere"}, nil, "--listen (OUTBOX_CONSOLE_ADDR): not host:port"},
		{"token as flag", []string{"console", "--store", url, "--token", consoleTestToken}, nil, "unknown flag --token"},
		{"relay non-loopback", []string{"relay", "--store", url, "--transport", "memory", "--console-addr", "10.0.0.1:8081"}, nil, "--console-addr (OUTBOX_CONSOLE_ADDR): \"10.0.0.1\" is not a loopback address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tt.vars, tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, tt.want)
			}
			if strings.Contains(stderr, consoleTestToken) {
				t.Fatal("the error repeats the token")
			}
		})
	}
}

func TestConsoleBesideTheRelay(t *testing.T) {
	url, store := sqliteStore(t)
	m, err := outbox.NewMessage("ORDER_PLACED", map[string]string{"id": "o-1"})
	if err != nil {
		t.Fatal(err)
	}
	add(t, store, m)
	kill(t, store, []*outbox.Message{m}, "broker said no")

	r := startRelayInProcess(t, map[string]string{"OUTBOX_CONSOLE_TOKEN": consoleTestToken}, "",
		"--store", url, "--transport", "memory", "--listen", "off", "--console-addr", "127.0.0.1:0", "--poll-interval", "50ms")
	addr := consoleAddrIn(r.stderr.String())
	if addr == "" {
		t.Fatalf("the relay did not log the console's address:\n%s", r.stderr.String())
	}
	base := "http://" + addr + "/api/outboxes/outbox"
	if code, body := consoleDo(t, "GET", base, "", ""); code != 200 || jsonInt(t, body, "dead") != 1 {
		t.Fatalf("GET %s: %d %s", base, code, body)
	}
	if code, body := consoleDo(t, "POST", base+"/dead/requeue", consoleTestToken, `{"ids":["`+m.ID+`"],"expect":1}`); code != 200 {
		t.Fatalf("requeue: %d %s", code, body)
	}
	// The relay publishes the requeued message: the memory transport prints its envelope.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(r.stdout.String(), m.ID) {
		if time.Now().After(deadline) {
			t.Fatalf("the relay never published the requeued message; stdout:\n%s\nstderr:\n%s", r.stdout.String(), r.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code := r.stop(); code != 0 {
		t.Fatalf("relay exited %d:\n%s", code, r.stderr.String())
	}
}
