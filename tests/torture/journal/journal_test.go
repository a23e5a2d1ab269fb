package journal

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/txoutbox/outbox/core"
	"github.com/txoutbox/outbox/outboxtest"
)

func TestSentMark(t *testing.T) {
	for text, want := range map[string]string{
		"outboxtest: injected fault": "u",
		"sqs: message 1 held back: message 0 of the same FIFO group \"k\" failed before it": "u",
		"sqs: message 1: 20000 bytes (body and attributes) exceed MaxMessageBytes (16384)":  "u",
		"sqs: publish to http://q: context deadline exceeded":                               "a",
		"read: connection reset by peer":                                                    "a",
	} {
		if got := sentMark(text); got != want {
			t.Errorf("sentMark(%q) = %s, want %s", text, got, want)
		}
	}
}

// TestInDoubt journals claims and settlements through a real (in-memory) store and checks which
// messages InDoubt lets repeat: only those whose settlement the journal cannot vouch for.
func TestInDoubt(t *testing.T) {
	ctx := context.Background()
	mem := outboxtest.NewMemoryStore()
	msgs := outboxtest.NewMessages(6, "T", "")
	if err := mem.Add(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "relay.journal")
	s, err := Wrap(mem, path)
	if err != nil {
		t.Fatal(err)
	}
	const lease = time.Minute
	claimed, err := s.Claim(ctx, core.ClaimRequest{Owner: "r", Limit: 10, Lease: lease})
	if err != nil || len(claimed) != 6 {
		t.Fatalf("claim: %d messages, %v", len(claimed), err)
	}
	id := outboxtest.IDs(claimed)
	if err := s.Ack(ctx, "r", id[:2]); err != nil { // 0, 1: acked in time
		t.Fatal(err)
	}
	if err := s.Nack(ctx, "r", []core.Failure{
		{ID: id[2], Error: outboxtest.ErrInjected.Error(), RetryAt: time.Now()}, // 2: never sent
		{ID: id[3], Error: "context deadline exceeded", RetryAt: time.Now()},    // 3: may have been sent
	}); err != nil {
		t.Fatal(err)
	}
	// 4 and 5 are never settled, as when the process is killed. A kill in the middle of a
	// write leaves a cut line, which must not settle anything.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("A 1 " + id[4][:20]); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	doubt, err := InDoubt([]string{path}, lease)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{id[3]: true, id[4]: true, id[5]: true}
	if len(doubt) != len(want) {
		t.Errorf("in doubt: %v, want %v", doubt, want)
	}
	for id := range want {
		if !doubt[id] {
			t.Errorf("%s not in doubt; got %v", id, doubt)
		}
	}

	// An ack that comes a lease or more after its claim may have been overtaken by another
	// relay's claim: its message is in doubt too.
	late := filepath.Join(t.TempDir(), "late.journal")
	if err := os.WriteFile(late, []byte("C 1000 "+id[0]+"\nA 61000 "+id[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if doubt, err := InDoubt([]string{late}, lease); err != nil || !doubt[id[0]] {
		t.Errorf("late ack: in doubt %v, %v; want %s", doubt, err, id[0])
	}
	if _, err := InDoubt([]string{filepath.Join(t.TempDir(), "missing")}, lease); err == nil {
		t.Error("a missing journal was accepted")
	}
}
