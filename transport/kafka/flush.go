package kafka

import (
	"context"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
)

// flusher shares a few producer clients (lanes) among concurrent Publish calls, group-commit
// style: calls buffer their records into a lane's generation, then one flush sends the
// generation and waits for every answer while nobody buffers into that lane; meanwhile the
// other lanes fill and flush. This keeps two promises at once:
//
//   - every record of a generation is buffered before any of it is sent (the lane's gate holds
//     the client's writes meanwhile), so a failing batch takes a key's later records in the
//     same generation down with it (see publication);
//   - a generation holds at most MaxMessageBytes, so each partition gets one batch per flush
//     and a partition's later batch is never on the wire while an earlier one can still fail.
//
// Concurrent calls share batches and requests, as they would on a plain franz-go client, and
// with several lanes one flush's round trip overlaps the next one's filling. Two calls with the
// same key may go through different lanes (producer IDs) only when they overlap, which the
// relay's ordered mode never lets them do.
type flusher struct {
	lanes      []*lane
	maxBytes   int
	maxRecords int
	stop       context.Context
	cancel     context.CancelFunc

	mu      sync.Mutex
	changed chan struct{} // closed, and replaced, whenever a lane's state changes
	closed  bool
	next    int // the lane to look at first for an empty generation
}

// lane is one producer client with its generations.
type lane struct {
	cl     *kgo.Client
	gate   *gate         // holds the client's writes while a generation is being buffered
	wake   chan struct{} // its generation may be ready to flush
	exited chan struct{}

	// Guarded by the flusher's mu.
	gen      *generation // the generation filling up
	inflight *generation // the generation being flushed
}

// generation is the records of one flush.
type generation struct {
	bytes, records int
	producing      int  // calls still buffering into it; guarded by the flusher's mu
	sealed         bool // no call may join any more; guarded by the flusher's mu
	flushed        chan struct{}
	finish         sync.Once

	mu     sync.Mutex
	failed map[topicPartition]int // failed records per partition
}

func newGeneration() *generation {
	return &generation{flushed: make(chan struct{}), failed: map[topicPartition]int{}}
}

// done marks g flushed: every promise of its records has run, or the client is closed.
func (g *generation) done() { g.finish.Do(func() { close(g.flushed) }) }

// fail records that r's promise reported a failure; its partition is known by then.
func (g *generation) fail(r *kgo.Record) {
	g.mu.Lock()
	g.failed[topicPartition{r.Topic, r.Partition}]++
	g.mu.Unlock()
}

// alone reports, once g is flushed, whether the failed record r was the only record of its
// partition in g. A partition has one batch per generation, and a failing batch fails every
// record of its partition, so the partition's failed records are all its records.
func (g *generation) alone(r *kgo.Record) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failed[topicPartition{r.Topic, r.Partition}] == 1
}

type topicPartition struct {
	topic     string
	partition int32
}

// newFlusher makes cfg.Concurrency lanes, each a producer client dialing through its gate.
func newFlusher(cfg Config) (*flusher, error) {
	stop, cancel := context.WithCancel(context.Background())
	f := &flusher{maxBytes: cfg.MaxMessageBytes, maxRecords: maxWaveRecords, stop: stop, cancel: cancel, changed: make(chan struct{})}
	for range cfg.Concurrency {
		g := newGate(stop.Done())
		cl, err := kgo.NewClient(laneOptions(cfg, g)...)
		if err != nil {
			cancel()
			for _, l := range f.lanes {
				l.cl.Close()
			}
			return nil, err
		}
		f.lanes = append(f.lanes, &lane{cl: cl, gate: g, wake: make(chan struct{}, 1), exited: make(chan struct{}), gen: newGeneration()})
	}
	for _, l := range f.lanes {
		go f.run(l)
	}
	return f, nil
}

// join reserves room for bytes and n records in a lane's generation that is filling up and
// returns them; the caller buffers its records on the lane's client, then calls buffered. A
// wave that fits no generation waits for one (an empty generation takes any wave).
func (f *flusher) join(ctx context.Context, bytes, n int) (*lane, *generation, error) {
	for {
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return nil, nil, outbox.ErrClosed
		}
		if l := f.pickLocked(bytes, n); l != nil {
			g := l.gen
			if g.records == 0 {
				l.gate.hold() // before anything of the generation is buffered
			}
			g.bytes += bytes
			g.records += n
			g.producing++
			f.mu.Unlock()
			return l, g, nil
		}
		// Every open generation is too full for this wave: flush them, so that new ones open.
		for _, l := range f.lanes {
			if l.inflight == nil && !l.gen.sealed && l.gen.records > 0 {
				l.gen.sealed = true
				l.kick()
			}
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// pickLocked returns the lane whose generation is to take a wave of bytes and n records, or nil
// when none can: a generation filling up that has room, or else an idle lane's empty
// generation. Idle lanes take turns opening generations, so that every lane's client keeps its
// connections and producer ID warm, whatever the load.
func (f *flusher) pickLocked(bytes, n int) *lane {
	var empty *lane
	for i := range f.lanes {
		l := f.lanes[(f.next+i)%len(f.lanes)]
		g := l.gen
		switch {
		case l.inflight != nil || g.sealed:
		case g.records == 0:
			if empty == nil {
				empty = l
			}
		case g.bytes+bytes <= f.maxBytes && g.records+n <= f.maxRecords:
			return l
		}
	}
	if empty != nil {
		f.next = (slices.Index(f.lanes, empty) + 1) % len(f.lanes)
	}
	return empty
}

// buffered says that a caller has buffered all its records of g on l.
func (f *flusher) buffered(l *lane, g *generation) {
	f.mu.Lock()
	g.producing--
	f.changedLocked()
	f.mu.Unlock()
	l.kick()
}

func (l *lane) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (f *flusher) changedLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// run flushes l's generations, one at a time, until the flusher closes.
func (f *flusher) run(l *lane) {
	defer close(l.exited)
	for {
		select {
		case <-l.wake:
		case <-f.stop.Done():
			return
		}
		f.mu.Lock()
		g := l.gen
		if g.records == 0 {
			f.mu.Unlock()
			continue
		}
		g.sealed = true
		for g.producing > 0 {
			ch := f.changed
			f.mu.Unlock()
			select {
			case <-ch:
			case <-f.stop.Done():
				return
			}
			f.mu.Lock()
		}
		l.inflight = g
		l.gen = newGeneration()
		l.gate.release() // all of g is buffered: it may go
		f.changedLocked()
		f.mu.Unlock()

		// Flush returns once every buffered record's promise has run; it is cut short only by
		// Close, which then fails what is left by closing the client.
		if l.cl.Flush(f.stop) != nil {
			return
		}
		g.done()

		f.mu.Lock()
		l.inflight = nil
		f.changedLocked()
		f.mu.Unlock()
	}
}

// close stops flushing and closes the clients: records still buffered fail with
// kgo.ErrClientClosed, and every generation counts as flushed. Ending stop also lets every
// held write go, so that the clients can close.
func (f *flusher) close() {
	f.mu.Lock()
	f.closed = true
	f.changedLocked()
	f.mu.Unlock()
	f.cancel()
	for _, l := range f.lanes {
		<-l.exited
		l.cl.Close()
	}
	// The clients' promises have all run now; wake whoever still waits.
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.lanes {
		l.gen.done()
		if l.inflight != nil {
			l.inflight.done()
		}
	}
}
