package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/txoutbox/outbox/backend"
	"go.uber.org/goleak"
)

// The relay's goroutines must all be gone when run returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where run creates its database, so we can see it cleaned up

	var out bytes.Buffer
	if err := run(t.Context(), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}

	// Every committed user's event arrives once as an origin-package envelope whose result is
	// the inserted row; the rolled-back user's event never does.
	want := map[string]User{
		"ada@example.com":    {ID: 1, Name: "Ada Lovelace", Email: "ada@example.com"},
		"grace@example.com":  {ID: 2, Name: "Grace Hopper", Email: "grace@example.com"},
		"edsger@example.com": {ID: 3, Name: "Edsger Dijkstra", Email: "edsger@example.com"},
	}
	text := out.String()
	got := map[string]User{}
	sc := bufio.NewScanner(strings.NewReader(text))
	var lines []string
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		body, ok := strings.CutPrefix(line, "delivered: ")
		if !ok {
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &raw); err != nil || len(raw) != 5 {
			t.Fatalf("envelope %s: want exactly id, eventType, payload, result, timestamp (%v)", body, err)
		}
		m, err := backend.DecodeEnvelope([]byte(body))
		if err != nil {
			t.Fatalf("envelope %s: %v", body, err)
		}
		var payload struct{ Name, Email string }
		var row User
		if m.Type != "USER_CREATED" || json.Unmarshal(m.Payload, &payload) != nil || json.Unmarshal(m.Result, &row) != nil {
			t.Fatalf("envelope %s: want a USER_CREATED event with the user as result", body)
		}
		if _, dup := got[payload.Email]; dup {
			t.Fatalf("%s delivered twice", payload.Email)
		}
		got[payload.Email] = row
	}
	if len(got) != len(want) {
		t.Fatalf("delivered %v, want %v\n%s", got, want, strings.Join(lines, "\n"))
	}
	for email, u := range want {
		if got[email] != u {
			t.Errorf("%s: result %+v, want %+v", email, got[email], u)
		}
	}
	for _, line := range []string{
		"not created: ada@example.com: ",
		"relay stats: claimed=3 published=3 failed=0 dead=0 ",
		"outbox: pending=0 dead=0 ",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("output lacks %q:\n%s", line, text)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("run left %d entries in the temp dir", len(left))
	}
}
