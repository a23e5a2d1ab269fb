package postgres

import (
	"slices"
	"testing"

	"github.com/txoutbox/outbox"
)

// inRuns keeps each key's rows while their places follow on from 1; from a gap on, the key's
// rows are handed back without an attempt. Unkeyed rows have no place and are always kept.
func TestInRuns(t *testing.T) {
	row := func(id, key string, place int64) claimed {
		return claimed{place: place, msg: stored{Message: outbox.Message{ID: id, Key: key}}}
	}
	got := []claimed{
		row("a1", "a", 1), row("b2", "b", 2), row("u", "", 0), row("a2", "a", 2),
		row("c1", "c", 1), row("b3", "b", 3), row("c3", "c", 3), row("a3", "a", 3), row("c4", "c", 4),
	}
	kept, back := inRuns(got)
	var keptIDs, backIDs []string
	for _, c := range kept {
		keptIDs = append(keptIDs, c.msg.ID)
	}
	for _, f := range back {
		if !f.Release || f.Dead || f.Delay != 0 {
			t.Fatalf("handed back %+v, want a release due at once", f)
		}
		backIDs = append(backIDs, f.ID)
	}
	if want := []string{"a1", "u", "a2", "c1", "a3"}; !slices.Equal(keptIDs, want) {
		t.Fatalf("kept %v, want %v", keptIDs, want)
	}
	// b has no first row; c misses its second, and what follows the gap goes back with it.
	if want := []string{"b2", "b3", "c3", "c4"}; !slices.Equal(backIDs, want) {
		t.Fatalf("handed back %v, want %v", backIDs, want)
	}
}
