package journal

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	memstore "github.com/txoutbox/outbox/store/memory"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
)

func TestSentMark(t *testing.T) {
	for text, want := range map[string]string{
		"outboxtest: injected fault": "u",
		"sqs: message 1 held back: message 0 of the same FIFO group \"k\" failed before it": "u",
		"sqs: message 1: 20000 bytes (body and attributes) exceed MaxMessageBytes (16384)":  "u",
		"sqs: publish to http://q: context deadline exceeded":                               "a",
		"read: connection reset by peer":                                                    "a",

		// The NATS and RabbitMQ transports' words for the same.
		"nats: message not sent: message 2 of key \"k\" before it failed: nats: timeout":                        "u",
		"nats: message 1: 20600 bytes exceed the limit of 16384 (MaxMessageBytes, or the server's max_payload)": "u",
		"rabbitmq: message 1: held back: an earlier message of key \"k\" failed: connection closed":             "u",
		"rabbitmq: message 1: body of 20600 bytes exceeds MaxMessageBytes (16384)":                              "u",
		"nats: message 1: no PubAck within 1s: the stream may have stored it":                                   "a",
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
	mem := memstore.New()
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
	claimed, err := s.Claim(ctx, outbox.ClaimRequest{Token: "r", Limit: 10, Lease: lease})
	if err != nil || len(claimed) != 6 {
		t.Fatalf("claim: %d messages, %v", len(claimed), err)
	}
	id := outboxtest.IDs(claimed)
	if _, err := s.Ack(ctx, "r", id[:2]); err != nil { // 0, 1: acked in time
		t.Fatal(err)
	}
	if _, err := s.Nack(ctx, "r", []outbox.Failure{
		{ID: id[2], Error: outboxtest.ErrInjected.Error(), Release: true}, // 2: never sent
		{ID: id[3], Error: "context deadline exceeded", Release: true},    // 3: may have been sent
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
	if _, err := f.WriteString("A 1 2 " + id[4][:20]); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	a, err := Analyze([]string{path}, lease)
	if err != nil {
		t.Fatal(err)
	}
	doubt := a.InDoubt
	if a.Claims != 1 || len(a.Overlaps) != 0 {
		t.Errorf("claims %d, overlaps %v; want 1 claim and no overlap", a.Claims, a.Overlaps)
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
	if err := os.WriteFile(late, []byte("C 1000 1005 "+id[0]+"\nA 60990 61000 "+id[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if a, err := Analyze([]string{late}, lease); err != nil || !a.InDoubt[id[0]] {
		t.Errorf("late ack: in doubt %v, %v; want %s", a.InDoubt, err, id[0])
	}
	if _, err := Analyze([]string{filepath.Join(t.TempDir(), "missing")}, lease); err == nil {
		t.Error("a missing journal was accepted")
	}
}

// TestOverlaps: a claim by another process is an overlap only when it certainly ran while the
// first process held the message: after its claim, before its lease could end and before it
// started to let go.
func TestOverlaps(t *testing.T) {
	const id = "01a21d83-f4a0-79c9-8d2b-167a1f24f63d"
	const lease = 3 * time.Second
	tests := []struct {
		name    string
		p, q    string // journal lines of two processes
		overlap bool
	}{
		{"claimed while held", "C 1000 1010 " + id, "C 2000 2010 " + id, true},
		{"claimed after the ack began", "C 1000 1010 " + id + "\nA 1500 1520 " + id, "C 2000 2010 " + id, false},
		{"claimed after a nack released it", "C 1000 1010 " + id + "\nN 1500 1520 " + id + ":u", "C 2000 2010 " + id, false},
		{"claimed after the lease ran out", "C 1000 1010 " + id, "C 4001 4010 " + id, false},
		{"claim that may have ended after the lease", "C 1000 1010 " + id, "C 3900 3999 " + id, false},
		{"claims racing each other", "C 1000 1010 " + id, "C 1005 1020 " + id, false},
		{"held by a killed process", "C 1000 1010 " + id, "C 3500 3600 " + id, true},
		// Killed after the store committed its nack but before journaling it: only the line
		// written before the call remains, and from then on the lease may be gone.
		{"killed while letting go", "C 1000 1010 " + id + "\nR 1500 1500 " + id, "C 2000 2010 " + id, false},
		{"claimed before letting go began", "C 1000 1010 " + id + "\nR 2500 2500 " + id, "C 2000 2010 " + id, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p, q := filepath.Join(dir, "p"), filepath.Join(dir, "q")
			if err := os.WriteFile(p, []byte(tt.p+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(q, []byte(tt.q+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			a, err := Analyze([]string{p, q}, lease)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(a.Overlaps) > 0; got != tt.overlap {
				t.Errorf("overlaps %v, want overlap=%t", a.Overlaps, tt.overlap)
			}
		})
	}
}

func TestFirstAckAfter(t *testing.T) {
	dir := t.TempDir()
	id := "01a23124-63a0-7b91-ab18-c33df9cca47c"
	a := filepath.Join(dir, "a.journal")
	b := filepath.Join(dir, "b.journal")
	for path, text := range map[string]string{
		a: "C 1000 1001 " + id + "\nA 1500 1502 " + id + "\nA 3000 3001 " + id + "\nA 2600 260",
		b: "C 2000 2001 " + id + "\nN 2100 2101 " + id + ":a\nA 2500 2503 " + id + "\n",
	} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, ok, err := FirstAckAfter([]string{a, b}, time.UnixMilli(2000))
	if err != nil || !ok || got.UnixMilli() != 2500 {
		t.Errorf("FirstAckAfter(2000) = %v, %v, %v; want 2500 (the cut line skipped)", got.UnixMilli(), ok, err)
	}
	if _, ok, err := FirstAckAfter([]string{a, b}, time.UnixMilli(3001)); ok || err != nil {
		t.Errorf("FirstAckAfter(3001) = %v, %v; want none", ok, err)
	}
}

// TestAnalyzeWAL checks what the WAL mode's journals prove: which settled messages may be
// streamed again, that a killed holder's unsettled messages must be claimed again, how the
// slot changed hands, and that a killed holder holds nothing.
func TestAnalyzeWAL(t *testing.T) {
	id := func(n int) string { return fmt.Sprintf("%08d-0000-4000-8000-000000000000", n) }
	const lease = 3 * time.Second
	dir := t.TempDir()
	journals := map[string]string{
		// a takes the slot, settles 1 and 2, holds 3 and 4 unsettled, is killed; b takes
		// over and streams 1 and 3 again (2 had been confirmed), never 4. s, a standby, claims
		// 5 from the table and acknowledges it.
		"a": "H 1000 1000 slot\nC 1100 1101 " + id(1) + "," + id(2) + "," + id(3) + "," + id(4) +
			"\nR 1150 1150 " + id(1) + "\nA 1150 1151 " + id(1) + "\nR 1160 1160 " + id(2) + "\nA 1160 1161 " + id(2) +
			"\nC 1200 1201 " + id(6) + "\nR 1210 1210 " + id(6) + "\nN 1210 1212 " + id(6) + ":u\nS 1210 1212 " + id(6) +
			"\nK 1300 1310 -\n",
		"b": "C 1200 1201 " + id(5) + "\nH 1800 1800 slot\nC 1900 1901 " + id(1) + "," + id(3) +
			"\nL 5000 5000 slot\nH 5100 5100 slot\nC 5200 5201 " + id(7) + "\nR 5250 5250 " + id(7) + "\nA 5250 5251 " + id(7) + "\n",
		// s claims 5 from the table (it never held the slot) and 7 after b acknowledged it.
		"s": "C 1000 1001 " + id(5) + "\nR 1100 1100 " + id(5) + "\nA 1100 1101 " + id(5) + "\nC 6000 6001 " + id(7) + "\n",
	}
	var paths []string
	for name, text := range journals {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	a, err := AnalyzeWAL(paths, lease)
	if err != nil {
		t.Fatal(err)
	}
	// 1: settled by a, killed holder, streamed again by b (3 too, unsettled: in doubt besides).
	// 5 was claimed again by b from the table after s (never a holder) acknowledged it: not
	// excused. 7: b held the slot from before its claim until the end of its journal.
	if want := map[string]bool{id(1): true, id(3): true}; !maps.Equal(a.Repeatable, want) {
		t.Errorf("repeatable %v, want %v", a.Repeatable, want)
	}
	if len(a.NotClaimedAgain) != 1 || !strings.HasPrefix(a.NotClaimedAgain[0], id(4)) {
		t.Errorf("not claimed again: %v, want only %s", a.NotClaimedAgain, id(4))
	}
	if a.Takes != 3 || a.Handovers != 1 || a.HolderKills != 1 || !slices.Equal(a.Takeovers, []time.Duration{500 * time.Millisecond}) {
		t.Errorf("takes %d, handovers %d, holder kills %d, takeovers %v; want 3, 1, 1 and [500ms]", a.Takes, a.Handovers, a.HolderKills, a.Takeovers)
	}
	if !a.Spilled[id(6)] || len(a.Spilled) != 1 {
		t.Errorf("spilled %v, want %s", a.Spilled, id(6))
	}
	// b's claim of 3 came within the lease of a's, but a was dead: no overlap in WAL mode, one
	// in table mode, where a killed relay's lease lives on in the table.
	if len(a.Overlaps) != 0 {
		t.Errorf("WAL overlaps: %v", a.Overlaps)
	}
	if table, err := Analyze(paths, lease); err != nil || len(table.Overlaps) != 1 {
		t.Errorf("table overlaps: %v, %v; want the claim of %s", table.Overlaps, err, id(3))
	}

	// A reader that lost the slot and then claimed from what it had streamed: that claim, and
	// the settled one before the loss, may both be streamed again by the next holder.
	lost := filepath.Join(t.TempDir(), "lost")
	next := filepath.Join(t.TempDir(), "next")
	for path, text := range map[string]string{
		lost: "H 100 100 slot\nC 200 201 " + id(8) + "\nA 210 211 " + id(8) + "\nL 300 300 slot\nC 400 401 " + id(9) + "\nA 410 411 " + id(9) + "\n",
		next: "H 500 500 slot\nC 600 601 " + id(8) + "," + id(9) + "\n",
	} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if a, err := AnalyzeWAL([]string{lost, next}, lease); err != nil || !a.Repeatable[id(8)] || !a.Repeatable[id(9)] || a.Handovers != 1 {
		t.Errorf("lost slot: repeatable %v, handovers %d, %v; want %s and %s, 1", a.Repeatable, a.Handovers, err, id(8), id(9))
	}
}

// TestJournalSlotAndKill writes the WAL lines through the package's own writers, a kill after
// a line the kill cut short included.
func TestJournalSlotAndKill(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	msgs := outboxtest.NewMessages(2, "T", "")
	if err := mem.Add(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "relay.journal")
	s, err := Wrap(mem, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Slot(true, time.UnixMilli(500), "slot"); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.Claim(ctx, outbox.ClaimRequest{Token: "r", Limit: 10, Lease: time.Minute})
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %d messages, %v", len(claimed), err)
	}
	id := outboxtest.IDs(claimed)
	if _, err := s.Nack(ctx, "r", []outbox.Failure{{ID: id[0], Error: "boom", Delay: time.Second}, {ID: id[1], Error: "down", Release: true}}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("A 1 2 " + id[0][:20]); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	now := time.Now()
	if err := MarkKilled(path, now, now.Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	a, err := AnalyzeWAL([]string{path}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// The nack settled both: neither is left for a next holder to stream again.
	if a.Takes != 1 || len(a.NotClaimedAgain) != 0 || !a.Spilled[id[0]] || a.Spilled[id[1]] {
		t.Errorf("takes %d, not claimed again %v, spilled %v; want 1 take, nothing unsettled, %s spilled", a.Takes, a.NotClaimedAgain, a.Spilled, id[0])
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "\nK ") {
		t.Errorf("no kill line in %q", b)
	}
}
