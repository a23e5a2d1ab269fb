//go:build torture

package torture

import (
	"context"
	"strings"
	"testing"

	"github.com/txoutbox/outbox"
)

// releaseBlockedKeys checks what a dead event at the head of a key did in ordered mode: it
// died with its reason and held back the later events of its key, none of which arrived
// (every other key kept flowing: the lane drained around it). It then purges the dead events
// with Inspector.Purge, as an operator would, and reports whether there was anything to purge.
func releaseBlockedKeys(t *testing.T, ctx context.Context, ln *lane) bool {
	t.Helper()
	blockers, followers := ln.ledger.blocked()
	if len(blockers) == 0 {
		return false
	}
	if n := ln.consumer.has(followers); n > 0 {
		t.Errorf("%s: %d of the %d events behind a dead event of their key arrived before it was purged", ln.name, n, len(followers))
	}
	dead, err := ln.outbox.inspector().ListDead(ctx, outbox.DeadFilter{IDs: blockers})
	if err != nil {
		t.Fatalf("%s: list the blockers: %v", ln.name, err)
	}
	if len(dead) != len(blockers) {
		t.Errorf("%s: %d of %d blockers are dead", ln.name, len(dead), len(blockers))
	}
	for _, d := range dead {
		if !strings.Contains(d.LastError, "MaxMessageBytes") {
			t.Errorf("%s: blocker %s is dead without its reason: %q", ln.name, d.ID, d.LastError)
		}
	}
	n, err := ln.outbox.inspector().Purge(ctx, outbox.DeadFilter{IDs: blockers})
	if err != nil {
		t.Fatalf("%s: purge the blockers: %v", ln.name, err)
	}
	if n != len(blockers) {
		t.Errorf("%s: purged %d blockers, want %d", ln.name, n, len(blockers))
	}
	ln.ledger.mu.Lock()
	for _, id := range blockers {
		ln.ledger.purged[id] = true
	}
	ln.ledger.heldBack += len(followers)
	ln.ledger.mu.Unlock()
	t.Logf("%s: a dead event held back %d later events of its key while every other key flowed; purged, they followed", ln.name, len(followers))
	return true
}
