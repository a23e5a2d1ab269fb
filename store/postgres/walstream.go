package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// maxUnanswered is how many requests for a reply in a row, with no data between them, make the
// reader end its session (see errServerWaiting).
const maxUnanswered = 3

// errServerWaiting ends a session whose server waits for a confirmation the reader cannot give.
var errServerWaiting = errors.New("the server keeps asking for a confirmation this reader cannot give yet (shutting down?); reconnecting")

// errNotHolding refuses a write on behalf of a reader that no longer holds the slot.
var errNotHolding = errors.New("this reader no longer holds the replication slot")

// spillBatchShare is the share of MaxBufferedBytes one batch of a large transaction written
// to the table may hold: while it is written the batch is held three times over (the
// messages, the statement's arguments, their encoding on the wire).
const spillBatchShare = 8

// Reconnect delays of the WAL reader after a broken session (database restart, network).
var streamBackoff = outbox.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}

// walStream is the reader of a WAL-mode store: one goroutine that holds the replication slot (or
// waits for it, as a standby), takes the committed messages into the buffer and tells the
// server how far it may recycle WAL.
type walStream struct {
	s      *Store
	cfg    WALConfig
	prefix string // of the table's messages
	beat   string // prefix of heartbeats
	buf    *walBuffer
	// spillSQL writes streamed messages to the table (see Store.spill).
	spillSQL string
	// positions is the quoted table where the reader keeps the position it confirmed.
	positions string

	// spillBatch bounds the bytes of one batch of a large transaction written to the table
	// (see stream's take).
	spillBatch int64

	startOnce sync.Once
	// slotChecked is when a write last found the slot there (unix nanos; see walWrite.emit).
	slotChecked atomic.Int64
	holding     atomic.Bool
	// pid is the server process of the replication connection while this reader holds the
	// slot, 0 otherwise: writes on the reader's behalf (spills, the kept position) go through
	// only while the slot's active_pid is still this one (see Store.spill).
	pid atomic.Uint32
	// fence is the advisory lock key that orders those writes before a new holder's snapshot
	// of the table.
	fence    int64
	lastSeen atomic.Int64 // unix nanos of the last transaction streamed (heartbeat timing)
	// inTable holds the undelivered messages in the table when this reader took the slot: a
	// reader before it may have spilled some of what is streamed again up to catchUp (the WAL's
	// end then; the earlier reader cannot have read further). Those are the table's to deliver:
	// taken from the stream too, they would go out twice, and be held by two relays at once.
	// Only the reader's goroutine uses them.
	inTable map[string]bool
	catchUp pglogrepl.LSN
	// tabled is what the position table recorded, when this reader took the slot, of a
	// transaction too large for the buffer that was being written to the table as it was
	// decoded: streamed again, its messages up to that count are the table's to deliver (see
	// stream's flush). Only the reader's goroutine uses it.
	tabled tabledTx
	// record is false when the position table (or its large-transaction columns) is missing:
	// then nothing is recorded there, and only the skipping is lost.
	record bool

	mu        sync.Mutex
	err       error     // why the last session ended or could not start; nil while holding
	fatal     bool      // err needs an operator (slot missing, no permission, wal_level)
	heldSince time.Time // when this reader took the slot
	// spilled holds the keys that may have undelivered messages in the table: in ordered mode
	// their streamed messages queue behind those. Each maps to the stream position from which
	// they do: 0 for all (a failed publish, or a key found in the table), the transaction's end
	// for a corrupt message dead-lettered as it is streamed, so the key's events streamed before
	// it still go out first. A key leaves it when a claim finds the table has none of its
	// messages left; keys that get no further message are pruned by reloading the set from the
	// table once it grows past spilledPrune.
	spilled     map[string]pglogrepl.LSN
	spilledRead time.Time                // when loadSpilled last read the set
	marked      map[string]pglogrepl.LSN // keys spilled while loadSpilled reads: kept whatever it reads
	// queuing counts, per key, the claims writing its streamed messages to the table behind
	// its spilled ones: a reload that reads the table before those rows are written (and after
	// the key's earlier rows were delivered) keeps the key.
	queuing   map[string]int
	syncs     map[string]chan struct{} // heartbeat tokens Sync waits for
	listeners map[chan struct{}]struct{}
	tableNext time.Time // when the table must next be looked at for due rows
}

func newWALStream(s *Store) *walStream {
	w := &walStream{
		s: s, cfg: *s.cfg.WAL,
		prefix: walPrefix(s.cfg.Schema, s.cfg.Table), beat: walHeartbeatPrefix(s.cfg.Schema, s.cfg.Table),
		spillSQL: spillQuery(s.table), positions: positionTable(s.cfg.Schema, s.cfg.Table),
		spilled: map[string]pglogrepl.LSN{}, queuing: map[string]int{}, syncs: map[string]chan struct{}{}, listeners: map[chan struct{}]struct{}{},
	}
	w.buf = newWALBuffer(w.cfg.MaxBuffered, w.cfg.MaxBufferedBytes, w.wake)
	w.spillBatch = w.cfg.MaxBufferedBytes / spillBatchShare
	h := fnv.New64a()
	_, _ = h.Write([]byte("outbox wal slot\x00" + w.cfg.Slot))
	w.fence = int64(h.Sum64())
	return w
}

// start runs the reader in the background until the store closes. The relay's first Claim or
// Listen starts it, so a service that only writes never opens a replication connection.
func (w *walStream) start() {
	w.startOnce.Do(func() {
		w.s.listeners.Add(1)
		go func() {
			defer w.s.listeners.Done()
			w.run(w.s.done)
		}()
	})
}

func (w *walStream) run(ctx context.Context) {
	attempt := 0
	for ctx.Err() == nil {
		held, err := w.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if held {
			attempt = 0
		}
		w.setErr(err)
		delay := streamBackoff.Delay(attempt)
		if inUse(err) {
			// Another reader holds the slot: stand by.
			delay = w.cfg.TakeoverInterval
		} else {
			attempt++
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

func (w *walStream) setErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err, w.fatal = err, needsOperator(err)
}

// fatalErr returns the reason the reader cannot run when only an operator can fix it.
func (w *walStream) fatalErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fatal {
		return w.err
	}
	return nil
}

// inUse reports the server's answer when another connection reads the slot.
func inUse(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55006"
}

// needsOperator reports errors no retry fixes: a missing slot or publication, a role without
// the REPLICATION attribute, a server without wal_level=logical.
func needsOperator(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "42704", "42501", "28000", "55000", "0A000":
		return true
	}
	return false
}

// session holds the slot until the connection breaks or ctx ends; held reports whether it got
// the slot at all.
func (w *walStream) session(ctx context.Context) (held bool, err error) {
	cfg, err := w.s.replicationConfig()
	if err != nil {
		return false, err
	}
	connCtx, cancel := context.WithTimeout(ctx, w.s.cfg.ConnectTimeout)
	conn, err := pgconn.ConnectConfig(connCtx, cfg)
	cancel()
	if err != nil {
		return false, fmt.Errorf("replication connection: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(closeCtx)
		cancel()
	}()
	err = pglogrepl.StartReplication(ctx, conn, w.cfg.Slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + w.cfg.Publication + "'", "messages 'true'"},
	})
	if err != nil {
		return false, fmt.Errorf("start replication from slot %q: %w", w.cfg.Slot, err)
	}
	// The slot is ours. Where it stands, which keys have messages in the table that later ones
	// of their key must queue behind, and which messages an earlier reader already wrote to the
	// table are read before anything is streamed, after the earlier reader's last writes to the
	// table (see Store.spill): from here on they are refused.
	if err := w.barrier(ctx); err != nil {
		return true, err
	}
	var confirmed, now pglogrepl.LSN
	err = w.s.pool.QueryRow(ctx, "SELECT confirmed_flush_lsn, pg_current_wal_lsn() FROM pg_replication_slots WHERE slot_name = $1", w.cfg.Slot).Scan(&confirmed, &now)
	if err != nil {
		return true, fmt.Errorf("read slot %q: %w", w.cfg.Slot, err)
	}
	if err := w.loadSpilled(ctx); err != nil {
		return true, err
	}
	if err := w.loadInTable(ctx, now); err != nil {
		return true, err
	}
	kept, err := w.kept(ctx)
	if err != nil {
		return true, err
	}
	w.pid.Store(conn.PID())
	w.buf.start(max(confirmed, kept))
	w.mu.Lock()
	w.err, w.fatal, w.heldSince = nil, false, time.Now()
	w.tableNext = time.Time{}
	w.mu.Unlock()
	w.holding.Store(true)
	// However the session ends, this reader no longer holds the slot: what it streamed is
	// dropped (the next holder, perhaps a standby, streams it again), and nothing it handed out
	// can be settled or spilled any more.
	defer func() {
		w.pid.Store(0)
		w.buf.drop()
		w.holding.Store(false)
	}()
	w.lastSeen.Store(time.Now().UnixNano())

	beatCtx, stopBeat := context.WithCancel(ctx)
	var beating sync.WaitGroup
	beating.Go(func() { w.heartbeats(beatCtx) })
	defer beating.Wait()
	defer stopBeat()
	err = w.stream(ctx, conn)
	if ctx.Err() != nil {
		w.letGo(conn)
	}
	return true, err
}

// barrier waits until no write on behalf of an earlier holder of the slot is in progress (they
// hold the fence's lock shared; see Store.spill).
func (w *walStream) barrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, w.s.cfg.ConnectTimeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, w.s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", w.fence)
		return err
	})
	if err != nil {
		return fmt.Errorf("wait for the previous holder's writes: %w", err)
	}
	return nil
}

// letGo ends a session that stops cleanly (the store closes): it writes to the table the
// unsettled messages that stand before settled ones (see walBuffer.stop), then confirms and
// keeps everything settled before closing the connection, so the next holder streams nothing
// that was acknowledged. A failure only costs what a crash would: duplicates.
func (w *walStream) letGo(conn *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), w.s.cfg.ConnectTimeout)
	defer cancel()
	if rest := w.buf.stop(); len(rest) > 0 {
		spills := make([]spill, len(rest))
		for i, m := range rest {
			spills[i] = spill{msg: m} // due now, no attempt: it was not published, or not acked
		}
		if w.s.spill(ctx, spills) == nil {
			w.buf.stopSpilled(rest)
		}
	}
	confirmed, _, _ := w.buf.position()
	_ = w.persist(ctx, confirmed)
	if err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: confirmed}); err != nil {
		return
	}
	// Ending the copy makes the server answer only after it has read the status update.
	if d, ok := ctx.Deadline(); ok {
		_ = conn.Conn().SetDeadline(d)
	}
	_, _ = pglogrepl.SendStandbyCopyDone(ctx, conn)
}

// stream reads the replication stream until it breaks.
func (w *walStream) stream(ctx context.Context, conn *pgconn.PgConn) error {
	var (
		inTx      bool
		committed time.Time
		// fresh is false for a transaction taken in already (streamed again after a
		// reconnect): its messages are skipped as they come.
		fresh   bool
		msgs    []*outbox.Message
		pending int64 // bytes of msgs
		// overflow is true once the transaction's messages do not fit in the buffer: from
		// then on they are written to the table as they are decoded (spills, pending bytes of
		// them), and none of it is buffered.
		overflow    bool
		spills      []*outbox.Message
		spillsBytes int64
		// final is the transaction's commit position; skip counts its first messages still
		// to be passed over (an earlier session wrote them to the table), tabled its
		// messages in the table, those included.
		final        pglogrepl.LSN
		skip, tabled int64
		corrupt      []corruptWAL
		// unanswered counts the server's requests for a reply since it last sent data.
		unanswered int
	)
	var persisted pglogrepl.LSN
	status := func() error {
		confirmed, _, _ := w.buf.position()
		if confirmed > persisted && w.persist(ctx, confirmed) == nil {
			persisted = confirmed
		}
		if err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: confirmed}); err != nil {
			return fmt.Errorf("send standby status: %w", err)
		}
		return nil
	}
	// One receive deadline per status interval, not one per message.
	nextStatus := time.Now().Add(w.cfg.StatusInterval)
	recv := newDeadline(ctx, nextStatus)
	defer recv.stop()
	tick := func() error {
		if time.Now().After(nextStatus) {
			// Sent at every interval even when nothing moved: it is also the keepalive that
			// keeps wal_sender_timeout from ending the session.
			if err := status(); err != nil {
				return err
			}
			nextStatus = time.Now().Add(w.cfg.StatusInterval)
			recv.reset(nextStatus)
		}
		return nil
	}
	// await is back pressure: the reader stops reading until ready reports true, which
	// messages leaving the buffer may bring. The server keeps the WAL; the status updates keep
	// the session alive meanwhile. A Sync waiting meanwhile returns: its heartbeat is behind
	// what the relay must settle first, and the relay has enough to claim.
	await := func(ready func() bool) error {
		for !ready() {
			w.releaseSyncs()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-w.buf.space:
			case <-time.After(time.Until(nextStatus)):
			}
			if err := tick(); err != nil {
				return err
			}
		}
		return nil
	}
	notFull := func() bool { return !w.buf.full() }
	// flush writes the overflowing transaction's messages decoded so far to the table, in
	// order. A key's earlier messages still buffered go out first: the table could deliver
	// these before them. Its later messages in the stream queue behind these in ordered mode.
	flush := func() error {
		for len(spills) > 0 {
			// At most spillBatch bytes per statement, but at least one message.
			n, bytes := 1, walSize(spills[0])
			for n < len(spills) && bytes+walSize(spills[n]) <= w.spillBatch {
				bytes += walSize(spills[n])
				n++
			}
			chunk := spills[:n]
			keys := map[string]bool{}
			for _, m := range chunk {
				if m.Key != "" {
					keys[m.Key] = true
				}
			}
			if err := await(func() bool { return !w.buf.holdsAny(keys) }); err != nil {
				return err
			}
			batch := make([]spill, len(chunk))
			for i, m := range chunk {
				batch[i] = spill{msg: m} // due now, no attempt
			}
			// How much of the transaction is in the table is recorded with the write: the
			// position cannot move into a transaction, so a reader stopping (or crashing)
			// before its COMMIT leaves it to be streamed again whole, and the messages in the
			// table (delivered and deleted from there, perhaps) must not be written there again.
			// Not cancelled by the store's closing: a statement of megabytes cut off while it is
			// being sent leaves the server waiting for the rest, and the pool's close waits for
			// that connection (15 s) before the store's Close returns. The batch is written, and
			// the reader stops at its next wait.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.s.cfg.ConnectTimeout)
			var record func(pgx.Tx) error
			if w.record {
				total := tabled + int64(n)
				record = func(tx pgx.Tx) error {
					_, err := tx.Exec(wctx, "INSERT INTO "+w.positions+` (slot, confirmed, tabled_tx, tabled) VALUES ($1, '0/0', $2, $3)
						ON CONFLICT (slot) DO UPDATE SET tabled_tx = excluded.tabled_tx, tabled = excluded.tabled`, w.cfg.Slot, final, total)
					return err
				}
			}
			err := w.s.spillThen(wctx, batch, record)
			cancel()
			if err != nil {
				return fmt.Errorf("write a transaction past the buffer's bound to the table: %w", err)
			}
			tabled += int64(n)
			for k := range keys {
				w.markSpilled(k, 0)
			}
			w.tableDueBy(time.Now())
			w.wake()
			clear(chunk) // written: nothing here keeps them
			spills, spillsBytes = spills[n:], spillsBytes-bytes
		}
		spills, spillsBytes = spills[:0], 0
		return nil
	}
	// take holds a decoded message of the transaction until its COMMIT, or writes it to the
	// table when the transaction does not fit in the buffer.
	take := func(m *outbox.Message) error {
		size := walSize(m)
		if !overflow && !w.buf.fitsAlone(len(msgs)+1, pending+size) {
			overflow = true
			spills, spillsBytes = append(spills[:0], msgs...), pending
			clear(msgs) // moved to spills: the backing array must not keep them once written
			msgs, pending = msgs[:0], 0
		}
		if !overflow {
			// It fits once the buffer has room: wait for it, as when the buffer is full.
			if err := await(func() bool { return w.buf.room(len(msgs)+1, pending+size) }); err != nil {
				return err
			}
			msgs, pending = append(msgs, m), pending+size
			return nil
		}
		if len(spills) > 0 && spillsBytes+size > w.spillBatch || !w.buf.room(len(spills)+1, spillsBytes+size) {
			if err := flush(); err != nil {
				return err
			}
			if err := await(func() bool { return w.buf.room(1, size) }); err != nil {
				return err
			}
		}
		spills, spillsBytes = append(spills, m), spillsBytes+size
		return nil
	}
	for {
		if err := tick(); err != nil {
			return err
		}
		if !inTx && w.buf.full() {
			if err := await(notFull); err != nil {
				return err
			}
			continue
		}
		raw, err := conn.ReceiveMessage(recv.ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		var data []byte
		switch m := raw.(type) {
		case *pgproto3.CopyData:
			data = m.Data
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(m)
		default:
			continue
		}
		if len(data) == 0 {
			continue
		}
		switch data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
			if err != nil {
				return fmt.Errorf("parse keepalive: %w", err)
			}
			// A keepalive's position is how far the server has decoded and sent: with nothing
			// unsettled and no transaction half received, nothing before it is missing here, so
			// it may be confirmed. Without that, a database whose other writes never reach the
			// slot would hold its WAL, and a shutting-down server, which waits until its
			// readers confirm everything it sent, would never finish.
			if !inTx {
				w.buf.caughtUp(ka.ServerWALEnd)
			}
			if ka.ReplyRequested {
				if err := status(); err != nil {
					return err
				}
				if unanswered++; unanswered >= maxUnanswered {
					// The server keeps asking for a position this reader cannot confirm yet
					// (messages are unsettled): it is waiting for it to stop, as a server
					// shutting down does. Let go; the next session streams the unsettled ones again.
					return errServerWaiting
				}
			}
		case pglogrepl.XLogDataByteID:
			unanswered = 0
			xld, err := pglogrepl.ParseXLogData(data[1:])
			if err != nil {
				return fmt.Errorf("parse WAL data: %w", err)
			}
			logical, err := pglogrepl.Parse(xld.WALData)
			if err != nil {
				return fmt.Errorf("parse pgoutput message: %w", err)
			}
			switch m := logical.(type) {
			case *pglogrepl.BeginMessage:
				inTx, committed, msgs, corrupt = true, m.CommitTime, msgs[:0], corrupt[:0]
				// A transaction's commit record starts at or after the end of the one before.
				fresh, pending, overflow, spills, spillsBytes = m.FinalLSN >= w.received(), 0, false, spills[:0], 0
				final, skip, tabled = m.FinalLSN, 0, 0
				if fresh && w.tabled.tx != 0 && m.FinalLSN == w.tabled.tx {
					skip, tabled = w.tabled.n, w.tabled.n
				}
			case *pglogrepl.LogicalDecodingMessage:
				switch {
				case m.Prefix == w.prefix && m.Transactional && inTx:
					parts, err := decodeWALContent(m.Content)
					if err != nil {
						corrupt = append(corrupt, corruptWAL{lsn: m.LSN, content: append([]byte(nil), m.Content...), err: err})
						continue
					}
					for i, part := range parts {
						msg, err := decodeWAL(part)
						if err == nil {
							err = backend.ValidateStored(msg)
						}
						if err != nil {
							corrupt = append(corrupt, corruptWAL{lsn: m.LSN, part: i, content: append([]byte(nil), part...), msg: msg, err: err})
							continue
						}
						if !fresh {
							continue
						}
						if skip > 0 {
							skip-- // in the table already, written there by an earlier session
							continue
						}
						if err := take(msg); err != nil {
							return err
						}
					}
				case m.Prefix == w.beat:
					w.heard(string(m.Content))
				}
			case *pglogrepl.CommitMessage:
				if !inTx {
					continue
				}
				inTx = false
				w.lastSeen.Store(time.Now().UnixNano())
				if overflow {
					if err := flush(); err != nil {
						return err
					}
				}
				if len(corrupt) > 0 && m.TransactionEndLSN > w.received() {
					// Dead-lettered in the table before the transaction counts as taken in,
					// so a crash here streams it again instead of losing it.
					if err := w.s.spillCorrupt(ctx, corrupt); err != nil {
						return err
					}
					// The key's events streamed before this transaction go out first.
					for _, c := range corrupt {
						if c.msg != nil && c.msg.Key != "" {
							w.markSpilled(c.msg.Key, m.TransactionEndLSN)
						}
					}
				}
				w.buf.add(m.TransactionEndLSN, committed, w.notInTable(m.TransactionEndLSN, msgs))
				msgs, pending = nil, 0
			}
		}
	}
}

// deadline is a context that ends at a given time, renewed in place.
type deadline struct {
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
}

func newDeadline(parent context.Context, at time.Time) *deadline {
	d := &deadline{parent: parent}
	d.ctx, d.cancel = context.WithDeadline(parent, at)
	return d
}

func (d *deadline) reset(at time.Time) {
	d.cancel()
	d.ctx, d.cancel = context.WithDeadline(d.parent, at)
}

func (d *deadline) stop() { d.cancel() }

func (w *walStream) received() pglogrepl.LSN {
	w.buf.mu.Lock()
	defer w.buf.mu.Unlock()
	return w.buf.received
}

// heartbeats writes a heartbeat whenever nothing was streamed for a HeartbeatInterval: its
// transaction gives the reader a position to confirm on a database whose other writes never
// reach the slot, so the slot (and the WAL it retains) keeps up.
func (w *walStream) heartbeats(ctx context.Context) {
	t := time.NewTicker(w.cfg.HeartbeatInterval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, w.lastSeen.Load())) < w.cfg.HeartbeatInterval {
			continue
		}
		// A failed heartbeat only delays the slot's progress; the next one tries again.
		_ = w.s.heartbeat(ctx, "")
	}
}

// heard wakes the Sync waiting for this heartbeat.
func (w *walStream) heard(token string) {
	w.lastSeen.Store(time.Now().UnixNano())
	if token == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.syncs[token]; ok {
		close(c)
		delete(w.syncs, token)
	}
}

// heartbeat writes a heartbeat message in a transaction of its own.
func (s *Store) heartbeat(ctx context.Context, token string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	_, err := s.pool.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2::text)", s.wal.beat, token)
	return err
}

// Sync waits until every message committed before it was called has been streamed into this
// store's reader, so the relay can claim it: for tests and tools that write and then expect a
// claim to find their messages at once. The reader must hold the slot; Sync starts it.
func (s *Store) Sync(ctx context.Context) error {
	if s.wal == nil {
		return nil // table mode: a committed row is claimable at once
	}
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("postgres: sync: %w", err)
	}
	w := s.wal
	w.start()
	var b [12]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	done := make(chan struct{})
	w.mu.Lock()
	w.syncs[token] = done
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.syncs, token)
		w.mu.Unlock()
	}()
	if err := s.heartbeat(ctx, token); err != nil {
		return fmt.Errorf("postgres: sync: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		if err := w.fatalErr(); err != nil {
			return fmt.Errorf("postgres: sync: %w", err)
		}
		return fmt.Errorf("postgres: sync: %w", ctx.Err())
	case <-s.done.Done():
		return fmt.Errorf("postgres: sync: %w", outbox.ErrClosed)
	}
}

// releaseSyncs lets every waiting Sync return (see the reader's back pressure).
func (w *walStream) releaseSyncs() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for token, c := range w.syncs {
		close(c)
		delete(w.syncs, token)
	}
}

// markSpilled blocks key's streamed messages from position from on (0: all of them).
func (w *walStream) markSpilled(key string, from pglogrepl.LSN) {
	w.mu.Lock()
	defer w.mu.Unlock()
	blockFrom(w.spilled, key, from)
	if w.marked != nil {
		blockFrom(w.marked, key, from)
	}
}

func blockFrom(set map[string]pglogrepl.LSN, key string, from pglogrepl.LSN) {
	if at, ok := set[key]; !ok || from < at {
		set[key] = from
	}
}

// isSpilled reports whether key's message streamed in the transaction ending at end must queue
// behind the key's messages in the table.
func (w *walStream) isSpilled(key string, end pglogrepl.LSN) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	from, ok := w.spilled[key]
	return ok && end >= from
}

// loadSpilled reads the keys that have undelivered messages in the table (spilled by an earlier
// reader, dead, or written in table mode before the switch): their next messages in the stream
// must queue behind them.
func (w *walStream) loadSpilled(ctx context.Context) error {
	w.mu.Lock()
	w.marked = map[string]pglogrepl.LSN{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.marked = nil
		w.mu.Unlock()
	}()
	rows, err := w.s.pool.Query(ctx, "SELECT DISTINCT key FROM "+w.s.table+" WHERE status <> 'delivered' AND key <> ''")
	if err != nil {
		return fmt.Errorf("read spilled keys: %w", err)
	}
	var found []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return fmt.Errorf("read spilled keys: %w", err)
		}
		found = append(found, k)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read spilled keys: %w", err)
	}
	w.mu.Lock()
	// A key found in the table blocks all its streamed messages, unless this reader knows from
	// where (it dead-lettered the key's corrupt message itself).
	keys := make(map[string]pglogrepl.LSN, len(found))
	for _, k := range found {
		keys[k] = w.spilled[k]
	}
	for k, from := range w.marked {
		blockFrom(keys, k, from)
	}
	for k := range w.queuing {
		if from, ok := w.spilled[k]; ok {
			blockFrom(keys, k, from)
		}
	}
	w.spilled, w.spilledRead = keys, time.Now()
	w.mu.Unlock()
	return nil
}

// persist keeps the position the reader is about to confirm in the position table. PostgreSQL
// before 17 writes a slot's confirmed position to disk only now and then, so after a server
// restart the slot may stream again, from an older position, transactions that were settled
// and confirmed: the next reader skips what the table says was confirmed. Only positions the
// reader confirms are kept, so nothing unsettled is ever skipped. A failure only costs such
// duplicates; it is tried again at the next status update.
func (w *walStream) persist(ctx context.Context, pos pglogrepl.LSN) error {
	ctx, cancel := context.WithTimeout(ctx, w.s.cfg.ConnectTimeout)
	defer cancel()
	pid := w.pid.Load()
	if pid == 0 {
		return errNotHolding
	}
	// Only while this reader still holds the slot: a reader that lost it writes nothing on the
	// slot's behalf (see Store.fenced; a kept position needs no lock, it only ever names
	// settled transactions).
	_, err := w.s.pool.Exec(ctx, "INSERT INTO "+w.positions+` (slot, confirmed)
		SELECT $1::text, $2::pg_lsn WHERE EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1::text AND active_pid = $3)
		ON CONFLICT (slot) DO UPDATE SET confirmed = greatest(`+w.positions+`.confirmed, excluded.confirmed), updated_at = now()`, w.cfg.Slot, pos, int32(pid))
	return err
}

// tabledTx names the first n messages of the transaction committed at tx as written to the table.
type tabledTx struct {
	tx pglogrepl.LSN
	n  int64
}

// kept reads the position persist kept, zero when there is none, and the record of a large
// transaction written to the table (see walStream.tabled). A schema set up without the table
// (or, from an early version, without its large-transaction columns) only loses the skipping.
func (w *walStream) kept(ctx context.Context) (pglogrepl.LSN, error) {
	var pos pglogrepl.LSN
	var tx *pglogrepl.LSN
	var n int64
	w.tabled, w.record = tabledTx{}, false
	err := w.s.pool.QueryRow(ctx, "SELECT confirmed, tabled_tx, tabled FROM "+w.positions+" WHERE slot = $1", w.cfg.Slot).Scan(&pos, &tx, &n)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		w.record = true
		return 0, nil
	case undefinedTable(err):
		return 0, nil
	case undefinedColumn(err):
		err = w.s.pool.QueryRow(ctx, "SELECT confirmed FROM "+w.positions+" WHERE slot = $1", w.cfg.Slot).Scan(&pos)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read the kept position: %w", err)
		}
		return pos, nil
	case err != nil:
		return 0, fmt.Errorf("read the kept position: %w", err)
	}
	w.record = true
	if tx != nil {
		w.tabled = tabledTx{tx: *tx, n: n}
	}
	return pos, nil
}

// loadInTable reads the IDs of the table's undelivered messages (see walStream.inTable).
func (w *walStream) loadInTable(ctx context.Context, end pglogrepl.LSN) error {
	rows, err := w.s.pool.Query(ctx, "SELECT id::text FROM "+w.s.table+" WHERE status <> 'delivered'")
	if err != nil {
		return fmt.Errorf("read spilled messages: %w", err)
	}
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("read spilled messages: %w", err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read spilled messages: %w", err)
	}
	w.inTable, w.catchUp = ids, end
	return nil
}

// notInTable drops from a streamed transaction ending at end the messages an earlier reader
// wrote to the table.
func (w *walStream) notInTable(end pglogrepl.LSN, msgs []*outbox.Message) []*outbox.Message {
	if len(w.inTable) == 0 {
		return msgs
	}
	if end > w.catchUp {
		w.inTable = nil // past what an earlier reader can have streamed
		return msgs
	}
	out := msgs[:0]
	for _, m := range msgs {
		if !w.inTable[m.ID] {
			out = append(out, m)
		}
	}
	return out
}

// replicationConfig is the replication connection's configuration: ReplicationURL, or the
// pool's own settings, with replication=database.
func (s *Store) replicationConfig() (*pgconn.Config, error) {
	var cfg *pgconn.Config
	if u := s.cfg.WAL.ReplicationURL; u != "" {
		var err error
		if cfg, err = pgconn.ParseConfig(u); err != nil {
			return nil, errors.New("invalid ReplicationURL (details withheld: they may contain the password)")
		}
	} else {
		cfg = s.pool.Config().ConnConfig.Config.Copy()
	}
	cfg.RuntimeParams["replication"] = "database"
	return cfg, nil
}
