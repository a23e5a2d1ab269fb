package sqs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/sqs"
)

// A relay that dies between publish and ack publishes the same message again; on a FIFO queue
// the message ID as MessageDeduplicationId makes SQS deliver it once.
func TestFIFODeduplicatesByID(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, true)
	tr := newTransport(t, sqs.Config{QueueURL: url})
	in := prepared(t, messages(3, "T", "k")...)
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatalf("publish: %v", err)
	}
	// The same messages again, as after a crash, one of them on its own.
	if err := tr.Publish(testCtx(t), in[1:2]); err != nil {
		t.Fatalf("publish again: %v", err)
	}
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatalf("publish again: %v", err)
	}
	got, err := s.receive(testCtx(t), url, 3, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		if r.Msg.ID != in[i].ID || r.Dedup != in[i].ID || r.Group != "k" {
			t.Fatalf("message %d is %s (dedup %s, group %s), want %s (dedup the ID, group k)", i, r.Msg.ID, r.Dedup, r.Group, in[i].ID)
		}
	}
	s.expectNothing(t, url, 1500*time.Millisecond)
}

// Interleaved keys in one Publish call span several batches sent concurrently; each key still
// arrives in order. A key that is not a valid group ID keeps its order through its digest.
func TestFIFOOrderWithinGroups(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, true)
	tr := newTransport(t, sqs.Config{QueueURL: url, Concurrency: 4})
	keys := []string{"a", "b", "c", "key with spaces ✓"}
	var in []*outbox.Message
	for i := range 80 {
		k := keys[i%len(keys)]
		in = append(in, &outbox.Message{Type: "T", Key: k, Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
	}
	prepared(t, in...)
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got, err := s.receive(testCtx(t), url, len(in), false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	for _, m := range in {
		want[m.Key] = append(want[m.Key], m.ID)
	}
	have := map[string][]string{}
	for _, r := range got {
		have[r.Msg.Key] = append(have[r.Msg.Key], r.Msg.ID)
		switch {
		case r.Msg.Key == "key with spaces ✓":
			if !strings.HasPrefix(r.Group, "k-") || len(r.Group) != 66 {
				t.Errorf("key %q went to group %q, want its digest", r.Msg.Key, r.Group)
			}
		case r.Group != r.Msg.Key:
			t.Errorf("key %q went to group %q", r.Msg.Key, r.Group)
		}
	}
	for _, k := range keys {
		if strings.Join(have[k], ",") != strings.Join(want[k], ",") {
			t.Errorf("key %q arrived as %v, want %v", k, have[k], want[k])
		}
	}
}

// When a keyed message fails, the later messages with its key are held back (retryable) so a
// retry cannot be overtaken; other keys and unkeyed messages are not held.
func TestFIFOFailureHoldsBackItsKey(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, true)
	tr := newTransport(t, sqs.Config{QueueURL: url})
	in := prepared(t,
		&outbox.Message{Type: "T", Key: "a", Payload: json.RawMessage(`0`)},
		&outbox.Message{Type: "T", Key: "a", Payload: json.RawMessage(`1`)}, // oversized below
		&outbox.Message{Type: "T", Key: "b", Payload: json.RawMessage(`2`)},
		&outbox.Message{Type: "T", Key: "a", Payload: json.RawMessage(`3`)},
		&outbox.Message{Type: "T", Payload: json.RawMessage(`4`)},
		&outbox.Message{Type: "T", Key: "a", Payload: json.RawMessage(`5`)},
	)
	in[1].Payload = json.RawMessage(`"` + strings.Repeat("x", sqs.DefaultMaxMessageBytes) + `"`)

	err := tr.Publish(testCtx(t), in)
	var be *outbox.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("publish = %v, want a *outbox.BatchError", err)
	}
	if len(be.Failed) != 3 || !outbox.IsPermanent(be.Failed[in[1].ID]) {
		t.Fatalf("batch error %v, want message 1 permanent and 3, 5 held back", be)
	}
	for _, i := range []int{3, 5} {
		if err := be.Failed[in[i].ID]; err == nil || outbox.IsPermanent(err) || !strings.Contains(err.Error(), "held back") {
			t.Errorf("message %d: %v, want a retryable hold-back", i, err)
		}
	}
	got, err := s.receive(testCtx(t), url, 3, false)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range got {
		ids[r.Msg.ID] = true
	}
	for _, i := range []int{0, 2, 4} {
		if !ids[in[i].ID] {
			t.Errorf("message %d was not delivered (got %v)", i, ids)
		}
	}
}

// Messages without a Key go to the configured default group.
func TestFIFODefaultGroup(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, true)
	tr := newTransport(t, sqs.Config{QueueURL: url, DefaultGroupID: "unkeyed"})
	in := prepared(t, messages(12, "T", "")...)
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got, err := s.receive(testCtx(t), url, len(in), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Group != "unkeyed" {
			t.Fatalf("unkeyed message went to group %q, want the DefaultGroupID", r.Group)
		}
	}
}
