package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// How often a WAL-mode claim looks at the table when its last look found nothing due: spilled
// messages wait there for their retry time, requeued dead ones come back there.
const walTableInterval = time.Second

// Claim leases up to req.Limit due messages under req.Token. In table mode it is one statement
// (see claimTable). In WAL mode the messages come from the stream first, then from the table
// (the spilled ones); in ordered mode a streamed message whose key has messages in the table is
// written to the table behind them instead of returned, so the table delivers the key in order.
func (s *Store) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	if s.wal == nil {
		return s.claimTable(ctx, req)
	}
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	w := s.wal
	w.start()
	if err := w.fatalErr(); err != nil {
		return nil, fmt.Errorf("postgres: claim: WAL stream: %w", err)
	}
	now := time.Now()
	if err := w.pruneSpilled(ctx, req.Ordered, now); err != nil {
		return nil, fmt.Errorf("postgres: claim: %w", err)
	}
	// What the stream gave is returned even when the table fails next: it is leased already,
	// and the table is tried again at the next claim.
	out, held := w.buf.claim(req, now, w.isSpilled)
	if len(held) > 0 {
		free, err := s.queueBehindSpilled(ctx, req.Token, held)
		if err != nil && len(out) == 0 {
			return nil, fmt.Errorf("postgres: claim: %w", err)
		}
		out = append(out, free...)
	}
	if rest := req.Limit - len(out); rest > 0 && w.tableDue(now) {
		tr := req
		tr.Limit = rest
		more, err := s.claimTable(ctx, tr)
		if err != nil && len(out) == 0 {
			return nil, err
		}
		if len(more) < rest {
			w.tableLooked(now)
		}
		out = append(out, more...)
	}
	return out, nil
}

// spilledPrune is the size past which the spilled keys are read again from the table (at most
// once a minute), so keys whose last message was delivered long ago do not pile up.
const spilledPrune = 4096

// pruneSpilled keeps the spilled keys small: unordered claims never look at them, and an ordered
// relay's set is read again from the table when it has grown large.
func (w *walStream) pruneSpilled(ctx context.Context, ordered bool, now time.Time) error {
	w.mu.Lock()
	if !ordered {
		clear(w.spilled)
	}
	reload := ordered && len(w.spilled) > spilledPrune && now.Sub(w.spilledRead) > time.Minute
	w.mu.Unlock()
	if !reload {
		return nil
	}
	return w.loadSpilled(ctx)
}

func (w *walStream) tableDue(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !now.Before(w.tableNext)
}

// tableLooked records a table claim that found less than it asked for: nothing more is due
// there until a spill says so, or another process changed the table (a requeue), which the
// next look after walTableInterval finds.
func (w *walStream) tableLooked(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tableNext = now.Add(walTableInterval)
}

// tableDueBy records that the table has a message due at t (a spill's retry time).
func (w *walStream) tableDueBy(t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t.Before(w.tableNext) {
		w.tableNext = t
	}
}

// queueBehindSpilled handles streamed messages whose key had messages in the table: those whose
// key still has some are written to the table after them (pending, due now, no attempt
// charged) and settled here; the others are returned for publishing, and their keys forgotten.
func (s *Store) queueBehindSpilled(ctx context.Context, token string, held []*outbox.Message) ([]*outbox.Message, error) {
	w := s.wal
	keys := make([]string, 0, len(held))
	for _, m := range held {
		keys = append(keys, m.Key)
	}
	// Until it is settled here, a message handed back stays due at once for the next claim.
	handBack := func(msgs []*outbox.Message) {
		failures := make([]outbox.Failure, len(msgs))
		for i, m := range msgs {
			failures[i] = outbox.Failure{ID: m.ID, Release: true}
		}
		w.buf.release(token, failures, time.Now())
	}
	rows, err := s.pool.Query(ctx, "SELECT DISTINCT key FROM "+s.table+" WHERE key = ANY($1) AND status <> 'delivered'", keys)
	if err != nil {
		handBack(held)
		return nil, err
	}
	still := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			handBack(held)
			return nil, err
		}
		still[k] = true
	}
	if err := rows.Err(); err != nil {
		handBack(held)
		return nil, err
	}
	if walQueueHook != nil {
		walQueueHook()
	}
	var free, queue []*outbox.Message
	// The keys being queued stay spilled whatever a reload of the set reads meanwhile (see
	// walStream.queuing), and are marked again once their rows are written.
	from := map[string]pglogrepl.LSN{}
	w.mu.Lock()
	for _, m := range held {
		if still[m.Key] {
			queue = append(queue, m)
			if _, ok := from[m.Key]; !ok {
				from[m.Key] = w.spilled[m.Key]
				w.queuing[m.Key]++
			}
		} else {
			delete(w.spilled, m.Key)
			free = append(free, m)
		}
	}
	w.mu.Unlock()
	if len(queue) == 0 {
		return free, nil
	}
	spills := make([]spill, len(queue))
	for i, m := range queue {
		spills[i] = spill{msg: m}
	}
	err = s.spill(ctx, spills)
	w.mu.Lock()
	for k, at := range from {
		if w.queuing[k]--; w.queuing[k] <= 0 {
			delete(w.queuing, k)
		}
		if err == nil {
			blockFrom(w.spilled, k, at)
		}
	}
	w.mu.Unlock()
	if err != nil {
		handBack(queue) // the next claim tries again; the other keys go ahead
		return free, nil
	}
	w.buf.settle(token, ids(queue))
	w.tableDueBy(time.Now()) // they are due now
	w.wake()
	return free, nil
}

// walQueueHook, when set (by tests), runs in queueBehindSpilled between its look at the table
// and its write.
var walQueueHook func()

func ids(msgs []*outbox.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// Ack acknowledges delivered messages: in WAL mode streamed ones are settled in memory (the
// slot's position moves past them at the next status update), spilled ones in the table.
func (s *Store) Ack(ctx context.Context, token string, ids []string) (int, error) {
	if s.wal == nil {
		return s.ackTable(ctx, token, ids)
	}
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("postgres: ack: %w", err)
	}
	if err := backend.CheckToken(token); err != nil {
		return 0, fmt.Errorf("postgres: ack: %w", err)
	}
	n, table := s.wal.buf.settleHeld(token, ids)
	if len(table) == 0 {
		return n, nil
	}
	m, err := s.ackTable(ctx, token, table)
	return n + m, err
}

// Nack records failed publishes. In WAL mode a streamed message that failed (an attempt charged,
// or dead) is written to the table with its attempt and retry time, or as dead, and then counts
// as settled for the slot; a released one stays in memory, due again after its delay, so an
// outage writes nothing. Spilled messages are nacked in the table as in table mode.
func (s *Store) Nack(ctx context.Context, token string, failures []outbox.Failure) (int, error) {
	if s.wal == nil {
		return s.nackTable(ctx, token, failures)
	}
	if err := s.checkOpen(); err != nil {
		return 0, fmt.Errorf("postgres: nack: %w", err)
	}
	if err := backend.CheckToken(token); err != nil {
		return 0, fmt.Errorf("postgres: nack: %w", err)
	}
	w := s.wal
	var release, table []outbox.Failure
	var spills []spill
	for _, f := range failures {
		held := w.buf.held(token, []string{f.ID})
		switch {
		case len(held) == 0:
			table = append(table, f)
		case f.Release && !f.Dead:
			release = append(release, f)
		default:
			spills = append(spills, spill{msg: held[0], failure: f})
		}
	}
	n := w.buf.release(token, release, time.Now())
	if len(spills) > 0 {
		if err := s.spill(ctx, spills); err != nil {
			return n, fmt.Errorf("postgres: nack %d message(s): %w", len(spills), err)
		}
		spilledIDs := make([]string, len(spills))
		now := time.Now()
		for i, sp := range spills {
			spilledIDs[i] = sp.msg.ID
			if !sp.failure.Dead {
				w.tableDueBy(now.Add(max(sp.failure.Delay, 0)))
			}
			if sp.msg.Key != "" {
				w.markSpilled(sp.msg.Key, 0)
			}
		}
		n += w.buf.settle(token, spilledIDs)
	}
	if len(table) > 0 {
		m, err := s.nackTable(ctx, token, table)
		now := time.Now()
		for _, f := range table {
			if !f.Dead {
				w.tableDueBy(now.Add(max(f.Delay, 0)))
			}
		}
		return n + m, err
	}
	return n, nil
}

// spill is a streamed message written to the table, with the failure that sent it there (none
// when it only queues behind its key's spilled messages).
type spill struct {
	msg     *outbox.Message
	failure outbox.Failure
}

// spill writes streamed messages to the table in one statement, in order. A message that is
// there already (streamed again after a crash before the slot moved past it) is left as it is.
func (s *Store) spill(ctx context.Context, spills []spill) error {
	return s.spillThen(ctx, spills, nil)
}

// spillThen is spill, running then (when not nil) in the same transaction after the write.
func (s *Store) spillThen(ctx context.Context, spills []spill, then func(pgx.Tx) error) error {
	n := len(spills)
	cols := columnsOf(messagesOf(spills))
	attempts, delays := make([]int32, n), make([]int64, n)
	dead, texts := make([]bool, n), make([]*string, n)
	for i, sp := range spills {
		f := sp.failure
		if f.ID == "" { // queued behind its key: due now, no attempt
			continue
		}
		attempts[i] = int32(sp.msg.Attempts)
		if !f.Release || f.Dead {
			attempts[i]++
		}
		delays[i] = max(f.Delay, 0).Microseconds()
		dead[i] = f.Dead
		if t := backend.StorableText(f.Error); t != "" {
			texts[i] = &t
		}
	}
	err := s.fenced(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, s.wal.spillSQL, cols.ids, cols.types, cols.keys, cols.payloads, cols.results, cols.headers, cols.created, attempts, delays, dead, texts); err != nil {
			return err
		}
		if then != nil {
			return then(tx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %d message(s) to %s: %w", n, s.table, err)
	}
	return nil
}

// fenced runs fn in a transaction that commits only while this reader holds the slot. A reader
// whose replication connection was cut may not know it yet while a standby takes the slot and
// streams the same transactions; what the old reader wrote to the table after the new one read
// it would be delivered a second time from there. So the write holds the fence's lock shared
// and checks that the slot's reader is still this one; a new holder takes the lock exclusively
// (walStream.barrier) after it has the slot and before it reads the table, so every write
// either commits before that read or finds the slot taken.
func (s *Store) fenced(ctx context.Context, fn func(pgx.Tx) error) error {
	w := s.wal
	pid := w.pid.Load()
	if pid == 0 {
		return errNotHolding
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var holds bool
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock_shared($1)", w.fence); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1 AND active_pid = $2)", w.cfg.Slot, int32(pid)).Scan(&holds)
		if err != nil {
			return err
		}
		if !holds {
			return errNotHolding
		}
		return fn(tx)
	})
}

func messagesOf(spills []spill) []*outbox.Message {
	out := make([]*outbox.Message, len(spills))
	for i, sp := range spills {
		out[i] = sp.msg
	}
	return out
}

// corruptWAL is a message in the slot that does not decode into a valid Message: written by
// something other than this store under its prefix, or damaged.
type corruptWAL struct {
	lsn     pglogrepl.LSN
	part    int // its place in a batch
	content []byte
	msg     *outbox.Message // what could be decoded, or nil
	err     error
}

// spillCorrupt dead-letters corrupt streamed messages in the table with the reason, keeping the
// raw content (base64) in the payload for inspection. Each gets its own ID when it has a usable
// one, else an ID derived from its position, so streaming it again writes nothing twice.
func (s *Store) spillCorrupt(ctx context.Context, corrupt []corruptWAL) error {
	spills := make([]spill, len(corrupt))
	for i, c := range corrupt {
		id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprintf("%s@%s#%d", s.wal.prefix, c.lsn, c.part))).String()
		m := &outbox.Message{Type: "outbox.corrupt", CreatedAt: time.Now().UTC()}
		if c.msg != nil {
			if _, err := uuid.Parse(c.msg.ID); err == nil {
				id = c.msg.ID
			}
			if backend.StorableText(c.msg.Key) == c.msg.Key {
				m.Key = c.msg.Key
			}
		}
		m.ID = id
		payload, _ := json.Marshal(map[string]string{"wal_lsn": c.lsn.String(), "content_base64": base64.StdEncoding.EncodeToString(c.content)})
		m.Payload = payload
		reason := "postgres: corrupt message in the WAL at " + c.lsn.String() + ": " + c.err.Error()
		spills[i] = spill{msg: m, failure: outbox.Failure{ID: id, Error: reason, Dead: true}}
	}
	return s.spill(ctx, spills)
}

// listenWAL is Listen in WAL mode: a signal whenever streamed messages become claimable (and
// when spilled ones are due now). Spilled messages due later are found by the relay's polling.
func (s *Store) listenWAL(ctx context.Context) (<-chan struct{}, error) {
	w := s.wal
	w.start()
	out := make(chan struct{}, 1)
	w.mu.Lock()
	w.listeners[out] = struct{}{}
	w.mu.Unlock()
	s.listeners.Add(1)
	go func() {
		defer s.listeners.Done()
		select {
		case <-ctx.Done():
		case <-s.done.Done():
		}
		w.mu.Lock()
		delete(w.listeners, out)
		w.mu.Unlock()
		close(out)
	}()
	return out, nil
}

// wake signals every listener.
func (w *walStream) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for c := range w.listeners {
		signal(c)
	}
}

// countsWAL adds the streamed, unsettled messages to the table's pending count.
func (s *Store) countsWAL(c *outbox.Counts) {
	buffered, oldest := s.wal.buf.pending()
	c.Pending += int64(buffered)
	if !oldest.IsZero() && (c.OldestPending.IsZero() || oldest.Before(c.OldestPending)) {
		c.OldestPending = oldest
	}
}
