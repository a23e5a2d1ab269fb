package kafka

import (
	"slices"
	"testing"
)

// Idle lanes take turns opening generations, so that one publish after another warms every
// lane's client rather than the first alone; a generation filling up with room is joined first.
func TestFlusherLanesTakeTurns(t *testing.T) {
	f := &flusher{maxBytes: 100, maxRecords: 10}
	for range 3 {
		f.lanes = append(f.lanes, &lane{gen: newGeneration()})
	}
	index := func(l *lane) int { return slices.Index(f.lanes, l) }
	var got []int
	for range 4 {
		l := f.pickLocked(10, 1)
		got = append(got, index(l))
		l.gen.records, l.gen.bytes = 1, 10
		if again := f.pickLocked(10, 1); again != l {
			t.Fatalf("a wave with room in lane %d's filling generation went to lane %d", index(l), index(again))
		}
		l.gen = newGeneration() // flushed
	}
	if want := []int{0, 1, 2, 0}; !slices.Equal(got, want) {
		t.Fatalf("lanes opened generations in turn %v, want %v", got, want)
	}

	// A full generation sends the wave to an idle lane; with every lane busy there is none.
	f.lanes[0].gen.records, f.lanes[0].gen.bytes = 10, 100
	if l := f.pickLocked(10, 1); index(l) != 1 {
		t.Fatalf("a wave that fits no filling generation went to lane %d, want 1", index(l))
	}
	f.lanes[1].inflight, f.lanes[2].gen.sealed = newGeneration(), true
	if l := f.pickLocked(10, 1); l != nil {
		t.Fatalf("lane %d took a wave though every lane was full, flushing or sealed", index(l))
	}
}
