package outboxtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
)

var ownerSeq atomic.Int64

// owner returns a claim token unique within the test binary.
func owner(name string) string { return fmt.Sprintf("%s-%d", name, ownerSeq.Add(1)) }

// NewMessages returns n valid messages of type typ with payloads {"n":i}, all with key (which
// may be empty).
func NewMessages(n int, typ, key string) []*outbox.Message {
	msgs := make([]*outbox.Message, n)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: typ, Key: key, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return msgs
}

// IDs returns the IDs of msgs in order.
func IDs(msgs []*outbox.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAdd(t *testing.T, h StoreHarness, msgs ...*outbox.Message) []*outbox.Message {
	t.Helper()
	if err := h.Add(testCtx(t), msgs...); err != nil {
		t.Fatalf("add: %v", err)
	}
	return msgs
}

func mustClaim(t *testing.T, st outbox.Store, req outbox.ClaimRequest) []*outbox.Message {
	t.Helper()
	if req.Lease == 0 {
		req.Lease = time.Minute
	}
	if req.Limit == 0 {
		req.Limit = 100
	}
	msgs, err := st.Claim(testCtx(t), req)
	if err != nil {
		t.Fatalf("claim %+v: %v", req, err)
	}
	return msgs
}

// mustAck acks ids under token and returns how many the store settled.
func mustAck(t *testing.T, st outbox.Store, token string, ids ...string) int {
	t.Helper()
	n, err := st.Ack(testCtx(t), token, ids)
	if err != nil {
		t.Fatalf("ack: %v", err)
	}
	return n
}

// mustNack nacks failures under token and returns how many the store settled.
func mustNack(t *testing.T, st outbox.Store, token string, failures ...outbox.Failure) int {
	t.Helper()
	n, err := st.Nack(testCtx(t), token, failures)
	if err != nil {
		t.Fatalf("nack: %v", err)
	}
	return n
}

// sameIDs fails unless got has exactly the IDs want, in the same order.
func sameIDs(t *testing.T, what string, got []*outbox.Message, want ...string) {
	t.Helper()
	g := IDs(got)
	if len(g) != len(want) {
		t.Fatalf("%s: got %d messages %v, want %d %v", what, len(g), g, len(want), want)
	}
	for i := range g {
		if g[i] != want[i] {
			t.Fatalf("%s: message %d is %s, want %s (got %v, want %v)", what, i, g[i], want[i], g, want)
		}
	}
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// jsonEqual reports whether a and b are the same JSON value (stores may reformat JSON text).
func jsonEqual(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(bytes.TrimSpace(a)) == len(bytes.TrimSpace(b))
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

func inspector(t *testing.T, st outbox.Store) outbox.Inspector {
	t.Helper()
	in, ok := st.(outbox.Inspector)
	if !ok {
		t.Fatalf("store %T does not implement outbox.Inspector although the features say so", st)
	}
	return in
}

func mustCounts(t *testing.T, st outbox.Store) outbox.Counts {
	t.Helper()
	c, err := inspector(t, st).Counts(testCtx(t))
	if err != nil {
		t.Fatalf("counts: %v", err)
	}
	return c
}
