package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

// A reload of the spilled keys (a reconnect, or the set growing large) that reads the table
// after the key's last spilled message was delivered and before a claim's write queued the
// key's next streamed message behind it does not forget the key: its following message does not
// go out from the stream ahead of the queued one.
func TestWALReloadKeepsAQueuingKey(t *testing.T) {
	s, _ := newWALStore(t, nil)
	ctx := context.Background()
	ordered := func(token string) []*outbox.Message {
		t.Helper()
		got, err := s.Claim(ctx, outbox.ClaimRequest{Token: token, Limit: 100, Lease: time.Minute, Ordered: true})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	e1, e2, e3 := msg(t, "T", "k", 1), msg(t, "T", "k", 2), msg(t, "T", "k", 3)
	walAdd(t, s, e1)
	if got := ordered("a"); len(got) != 1 || got[0].ID != e1.ID {
		t.Fatalf("claimed %v, want e1", idsOf(got))
	}
	// e1 fails: it goes to the table and k queues behind it.
	if _, err := s.Nack(ctx, "a", []outbox.Failure{{ID: e1.ID, Error: "refused"}}); err != nil {
		t.Fatal(err)
	}
	walAdd(t, s, e2)
	// While the next claim queues e2 behind e1, e1 is delivered from the table and the keys are
	// read again, before e2's row is written.
	var hookErr error
	postgres.SetWALQueueHook(func() {
		postgres.SetWALQueueHook(nil)
		got := ordered("b")
		if len(got) != 1 || got[0].ID != e1.ID {
			t.Errorf("the table gave %v, want e1", idsOf(got))
			return
		}
		if _, err := s.Ack(ctx, "b", []string{e1.ID}); err != nil {
			hookErr = err
			return
		}
		hookErr = postgres.WALReloadSpilled(s)
	})
	t.Cleanup(func() { postgres.SetWALQueueHook(nil) })
	if got := ordered("c"); len(got) != 0 {
		t.Fatalf("claimed %v while e2 was queued", idsOf(got))
	}
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	walAdd(t, s, e3)
	got := ordered("d")
	at := map[string]int{}
	for i, m := range got {
		at[m.ID] = i + 1
	}
	if at[e3.ID] > 0 && (at[e2.ID] == 0 || at[e2.ID] > at[e3.ID]) {
		t.Fatalf("claimed %v: e3 went out ahead of e2, which waits in the table (e2 %s, e3 %s)", idsOf(got), e2.ID, e3.ID)
	}
}
