package postgres

import (
	"container/list"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/txoutbox/outbox"
)

// walBuffer holds what the WAL reader streamed and the relay has not settled yet: the messages,
// each with its in-process lease, and the transactions they came in, so the reader knows how far
// it may confirm. A transaction's end position may be confirmed once it and every transaction
// before it have no unsettled message left: a message is settled when it was acknowledged, or
// written to the table (spilled). Only the process holding the slot has a buffer, so leases
// here use the process clock, the only clock involved.
type walBuffer struct {
	mu       sync.Mutex
	max      int
	maxBytes int64
	bytes    int64 // of the entries (see walSize)
	// peak and peakBytes are the most held at once, buffered and pending (see room).
	peak      int
	peakBytes int64
	entries   *list.List // of *walEntry, unsettled, in stream (commit) order
	byID      map[string]*list.Element
	txs       []*walTx // streamed transactions not yet confirmable, in commit order
	// received is the end of the last transaction taken in; a transaction streamed again after
	// a reconnect ends at or before it and is skipped.
	received pglogrepl.LSN
	// confirmed is the end of the last transaction whose messages, and all before, are settled.
	confirmed pglogrepl.LSN
	// space receives a signal when messages leave the buffer; ready is called when messages
	// become claimable (new ones, released ones).
	space chan struct{}
	ready func()
	// live is true while the reader holds the slot. A reader that lost it (its replication
	// connection ended) hands out nothing more from here and settles nothing: the next holder
	// streams the same transactions again from the confirmed position.
	live bool
}

type walTx struct {
	end       pglogrepl.LSN
	committed time.Time
	size      int // messages it put in the buffer
	unsettled int
}

type walEntry struct {
	msg   outbox.Message
	size  int64
	tx    *walTx
	token string    // lease holder; "" when free
	until time.Time // lease end
	due   time.Time // a released message is claimable again from due
}

func newWALBuffer(max int, maxBytes int64, ready func()) *walBuffer {
	return &walBuffer{
		max: max, maxBytes: maxBytes, entries: list.New(), byID: map[string]*list.Element{},
		space: make(chan struct{}, 1), ready: ready,
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// start begins a streaming session at the slot's confirmed position.
func (b *walBuffer) start(confirmed pglogrepl.LSN) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.confirmed = max(b.confirmed, confirmed)
	b.received = max(b.received, confirmed)
	b.live = true
}

// drop forgets what is unsettled: the reader no longer holds the slot, and whoever takes it
// next streams these messages again from the confirmed position. The leases handed out from
// here are void: their Ack and Nack find nothing here, so they settle and spill nothing. The
// settled position stays: whoever held the slot meanwhile, what this reader settled is settled,
// and when it takes the slot again (a server restart) it need not stream that again.
func (b *walBuffer) drop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.entries.Init()
	clear(b.byID)
	b.bytes = 0
	b.txs, b.received = nil, b.confirmed
	b.live = false
	signal(b.space)
}

// stop ends the session cleanly: nothing more is handed out or settled, and it returns what
// must be written to the table for the confirmed position to pass every settled message. The
// position moves only to transaction ends, so that is every unsettled message of the
// transactions up to the last one with a settled message (partly settled ones, and wholly
// unsettled ones before them). The transactions after it are streamed again by the next
// holder: cheaper than writing them to the table, and nothing of them was acknowledged.
func (b *walBuffer) stop() []*outbox.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.live = false
	last := -1
	for i, tx := range b.txs {
		if tx.unsettled < tx.size {
			last = i
		}
	}
	if last < 0 {
		return nil
	}
	upTo := b.txs[last].end
	var out []*outbox.Message
	for el := b.entries.Front(); el != nil; el = el.Next() {
		e := el.Value.(*walEntry)
		if e.tx.end > upTo {
			break // stream order is commit order
		}
		m := e.msg
		out = append(out, &m)
	}
	return out
}

// stopSpilled settles, after a clean stop wrote them to the table, the messages stop returned.
func (b *walBuffer) stopSpilled(msgs []*outbox.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range msgs {
		el, ok := b.byID[m.ID]
		if !ok {
			continue
		}
		b.remove(el)
	}
	b.advance()
	signal(b.space)
}

// remove takes a settled entry out. The caller holds b.mu.
func (b *walBuffer) remove(el *list.Element) {
	e := el.Value.(*walEntry)
	b.entries.Remove(el)
	delete(b.byID, e.msg.ID)
	b.bytes -= e.size
	e.tx.unsettled--
}

// full reports whether the reader should stop reading until the relay settles some messages.
func (b *walBuffer) full() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.entries.Len() >= b.max || b.bytes >= b.maxBytes
}

// walSize is what a message counts for against MaxBufferedBytes: its variable parts.
func walSize(m *outbox.Message) int64 {
	n := len(m.ID) + len(m.Type) + len(m.Key) + len(m.Payload) + len(m.Result)
	for k, v := range m.Headers {
		n += len(k) + len(v)
	}
	return int64(n)
}

// fitsAlone reports whether n messages of the given bytes fit in an empty buffer.
func (b *walBuffer) fitsAlone(n int, bytes int64) bool {
	return n <= b.max && bytes <= b.maxBytes
}

// room reports whether n more messages of the given bytes, held by the reader beside the
// buffer (a transaction it is receiving), keep it within its bounds, and records the peak.
func (b *walBuffer) room(n int, bytes int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	total, totalBytes := b.entries.Len()+n, b.bytes+bytes
	if total > b.max || totalBytes > b.maxBytes {
		return false
	}
	b.peak, b.peakBytes = max(b.peak, total), max(b.peakBytes, totalBytes)
	return true
}

// holdsAny reports whether an unsettled message of one of keys is buffered.
func (b *walBuffer) holdsAny(keys map[string]bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(keys) == 0 {
		return false
	}
	for el := b.entries.Front(); el != nil; el = el.Next() {
		if keys[el.Value.(*walEntry).msg.Key] {
			return true
		}
	}
	return false
}

// add takes in one committed transaction's messages, or skips it when it was taken in already.
func (b *walBuffer) add(end pglogrepl.LSN, committed time.Time, msgs []*outbox.Message) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if end <= b.received {
		return false
	}
	b.received = end
	tx := &walTx{end: end, committed: committed}
	b.txs = append(b.txs, tx)
	for _, m := range msgs {
		if _, dup := b.byID[m.ID]; dup {
			continue // the same ID written twice: one delivery covers both
		}
		size := walSize(m)
		b.byID[m.ID] = b.entries.PushBack(&walEntry{msg: *m, size: size, tx: tx})
		b.bytes += size
		tx.size++
	}
	tx.unsettled = tx.size
	b.peak, b.peakBytes = max(b.peak, b.entries.Len()), max(b.peakBytes, b.bytes)
	b.advance()
	if len(msgs) > 0 {
		b.ready()
	}
	return true
}

// advance moves confirmed past the settled transactions at the front. The caller holds b.mu.
func (b *walBuffer) advance() {
	n := 0
	for n < len(b.txs) && b.txs[n].unsettled == 0 {
		b.confirmed = b.txs[n].end
		n++
	}
	if n > 0 {
		b.txs = append(b.txs[:0], b.txs[n:]...)
	}
}

// caughtUp records that the server has sent everything before pos: when nothing streamed is
// unsettled, the confirmed position moves to pos.
func (b *walBuffer) caughtUp(pos pglogrepl.LSN) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.txs) == 0 && pos > b.confirmed {
		b.confirmed = pos
	}
}

// position returns how far the reader may confirm, and the commit time of the oldest
// transaction it may not (zero when everything streamed is settled).
func (b *walBuffer) position() (confirmed pglogrepl.LSN, oldest time.Time, buffered int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.txs) > 0 {
		oldest = b.txs[0].committed
	}
	return b.confirmed, oldest, b.entries.Len()
}

// pending returns how many messages wait here and the creation time of the oldest.
func (b *walBuffer) pending() (n int, oldest time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for el := b.entries.Front(); el != nil; el = el.Next() {
		if c := el.Value.(*walEntry).msg.CreatedAt; oldest.IsZero() || c.Before(oldest) {
			oldest = c
		}
	}
	return b.entries.Len(), oldest
}

// claim leases up to req.Limit claimable messages to req.Token, in stream order; in ordered
// mode a key's run stops at its first message that is leased or not due, and messages for which
// blocked (given the key and the end of the message's transaction) reports true are handed
// back separately (they must go to the table behind the key's spilled ones), leased like the
// others.
func (b *walBuffer) claim(req outbox.ClaimRequest, now time.Time, blocked func(key string, end pglogrepl.LSN) bool) (out, held []*outbox.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.live {
		return nil, nil
	}
	var closed map[string]bool
	if req.Ordered {
		closed = map[string]bool{}
	}
	for el := b.entries.Front(); el != nil && len(out)+len(held) < req.Limit; el = el.Next() {
		e := el.Value.(*walEntry)
		keyed := req.Ordered && e.msg.Key != ""
		if keyed && closed[e.msg.Key] {
			continue
		}
		if (e.token != "" && e.until.After(now)) || e.due.After(now) {
			if keyed {
				closed[e.msg.Key] = true
			}
			continue
		}
		e.token, e.until = req.Token, now.Add(req.Lease)
		m := e.msg
		m.Headers = maps.Clone(m.Headers)
		if keyed && blocked != nil && blocked(m.Key, e.tx.end) {
			held = append(held, &m)
		} else {
			out = append(out, &m)
		}
	}
	return out, held
}

// held returns, of ids, the messages the claim with token holds here.
func (b *walBuffer) held(token string, ids []string) []*outbox.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*outbox.Message
	for _, id := range ids {
		if e := b.heldBy(id, token); e != nil {
			m := e.msg
			out = append(out, &m)
		}
	}
	return out
}

// settle removes the messages of ids that the claim with token holds (acknowledged, or now in
// the table) and returns how many.
func (b *walBuffer) settle(token string, ids []string) int {
	n, _ := b.settleHeld(token, ids)
	return n
}

// settleHeld is settle that also returns the IDs it does not hold (for the table to settle).
func (b *walBuffer) settleHeld(token string, ids []string) (n int, notHeld []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range ids {
		e := b.heldBy(id, token)
		if e == nil {
			notHeld = append(notHeld, id)
			continue
		}
		n++
		b.remove(b.byID[id])
	}
	if n > 0 {
		b.advance()
		signal(b.space)
	}
	return n, notHeld
}

// release frees the messages of failures that the claim with token holds, due again after
// their Delay, with nothing else changed; returns how many.
func (b *walBuffer) release(token string, failures []outbox.Failure, now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, f := range failures {
		e := b.heldBy(f.ID, token)
		if e == nil {
			continue
		}
		n++
		e.token, e.until, e.due = "", time.Time{}, now.Add(max(f.Delay, 0))
	}
	if n > 0 {
		b.ready()
	}
	return n
}

// heldBy returns the entry id while the claim with token holds it (never once the session
// stopped). The caller holds b.mu.
func (b *walBuffer) heldBy(id, token string) *walEntry {
	if !b.live {
		return nil
	}
	el, ok := b.byID[id]
	if !ok {
		return nil
	}
	if e := el.Value.(*walEntry); e.token == token {
		return e
	}
	return nil
}
