//go:build torture

package torture

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txoutbox/outbox/tests/torture/journal"
)

// WAL-mode settings of the relays (relayproc's defaults, passed explicitly so that they read
// here): a standby tries to take the slot every 500 ms, the holder reports its confirmed
// position every 200 ms, and an idle holder writes a heartbeat after 2 s.
var walFlags = []string{"-postgres-mode", "wal", "-wal-status-interval", "200ms", "-wal-takeover-interval", "500ms", "-wal-heartbeat-interval", "2s"}

const (
	// slotSampleEvery is how often the slot's confirmed position is sampled during a run.
	slotSampleEvery = 100 * time.Millisecond
	// confirmBound is how soon after the drain the slot must be confirmed past the last write:
	// a few status intervals, and a heartbeat if nothing else reached the slot since.
	confirmBound = 20 * time.Second
)

// walInsertPosition is the server's WAL insert position, as a number: read after a COMMIT
// returned, it is at or past the end of that transaction's commit record.
func walInsertPosition(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var lsn int64
	err := pool.QueryRow(ctx, "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8").Scan(&lsn)
	return lsn, err
}

// confirmedPosition is how far the slot's reader has confirmed, as a number.
func confirmedPosition(ctx context.Context, pool *pgxpool.Pool, slot string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var lsn *int64
	err := pool.QueryRow(ctx, "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::int8 FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&lsn)
	if err == nil && lsn == nil {
		err = fmt.Errorf("slot %s has no confirmed position", slot)
	}
	if err != nil {
		return 0, err
	}
	return *lsn, nil
}

func formatLSN(n int64) string { return fmt.Sprintf("%X/%X", uint64(n)>>32, uint32(n)) }

// dropSlot drops the lane's slot and publication, once no relay reads the slot any more: a
// killed relay's replication connection may take a moment to close on the server's side.
func (db *database) dropSlot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for {
		if err = db.store.DropSlot(ctx); err == nil {
			break
		}
		if !sleep(ctx, 200*time.Millisecond) {
			t.Errorf("drop slot %s: %v", db.slot, err)
			return
		}
	}
	var left int
	if err := db.admin.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", db.slot).Scan(&left); err != nil || left != 0 {
		t.Errorf("slot %s still there after DropSlot: %d, %v", db.slot, left, err)
	}
}

// dropStaleSlots drops what an interrupted run of these scenarios left behind: inactive slots
// of torture WAL lanes of other runs than the current one (whose schemas end in _<run>), with
// their publications and schemas. Nothing reads those slots, and each keeps the server's WAL
// from being recycled. (Torture runs never overlap.)
func dropStaleSlots(t *testing.T, admin *pgxpool.Pool, run string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := admin.Query(ctx, `SELECT slot_name FROM pg_replication_slots
		WHERE slot_name LIKE 'outbox\_torture\_wal\_%\_outbox' AND NOT active AND slot_name NOT LIKE '%\_' || $1 || '\_outbox'`, run)
	if err != nil {
		t.Fatalf("list stale slots: %v", err)
	}
	stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("list stale slots: %v", err)
	}
	for _, slot := range stale {
		_, err := admin.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot)
		var pgErr *pgconn.PgError
		if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42704") { // gone meanwhile
			t.Fatalf("drop stale slot %s: %v", slot, err)
		}
		schema := strings.TrimSuffix(strings.TrimPrefix(slot, "outbox_"), "_outbox")
		for _, ddl := range []string{"DROP PUBLICATION IF EXISTS " + pgx.Identifier{slot}.Sanitize(), "DROP SCHEMA IF EXISTS " + pgx.Identifier{schema}.Sanitize() + " CASCADE"} {
			if _, err := admin.Exec(ctx, ddl); err != nil {
				t.Fatalf("%s: %v", ddl, err)
			}
		}
		t.Logf("dropped the slot %s, its publication and schema, which an interrupted run left behind", slot)
	}
}

// slotSample is the slot's confirmed position as seen at a moment: everything it reflects was
// confirmed before at.
type slotSample struct {
	at        time.Time
	confirmed int64
}

// slotWatch samples a WAL lane's confirmed position while its relays run.
type slotWatch struct {
	mu      sync.Mutex
	samples []slotSample
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func watchSlot(admin *pgxpool.Pool, slot string) *slotWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &slotWatch{cancel: cancel}
	w.wg.Go(func() {
		tick := time.NewTicker(slotSampleEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			lsn, err := confirmedPosition(ctx, admin, slot)
			if err != nil {
				continue // the database is restarting
			}
			w.mu.Lock()
			w.samples = append(w.samples, slotSample{at: time.Now(), confirmed: lsn})
			w.mu.Unlock()
		}
	})
	return w
}

func (w *slotWatch) stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *slotWatch) snapshot() []slotSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.samples)
}

// waitConfirmed waits until the lane's slot is confirmed at or past lsn (the WAL position after
// the last write), and returns how long that took.
func (ln *lane) waitConfirmed(ctx context.Context, lsn int64) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(confirmBound)
	var got int64
	var err error
	for {
		if got, err = confirmedPosition(ctx, ln.db.admin, ln.db.slot); err == nil && got >= lsn {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) || !sleep(ctx, 100*time.Millisecond) {
			return 0, fmt.Errorf("%s: the slot %s was confirmed up to %s (%v), not past the last write at %s, %v after the drain",
				ln.name, ln.db.slot, formatLSN(got), err, formatLSN(lsn), confirmBound)
		}
	}
}

// walReport is what checkWAL found in one WAL lane.
type walReport struct {
	takes, handovers, holderKills int
	takeovers                     []time.Duration // from each holder's kill to the next take
	repeatable                    int             // events the journals let repeat because a holder was cut (beyond InDoubt)
	checked                       int             // events whose passing by the confirmed position a sample saw
	early                         int             // of them, confirmed before the broker had them
	notAgain                      int             // events a killed relay held unsettled that nobody claimed again
	caughtUp                      time.Duration
	tabled                        int // events a relay wrote to the outbox table (poison aside)
	outsideClaims                 int // claims by a relay whose reader did not hold the slot then
	notHolding                    int // messages of them that were not in the table
	reclaimed                     int // acknowledged events handed out again
	resent                        int // of them, outside what the journals leave in doubt
}

// checkWAL checks, in a WAL lane, that the slot's confirmed position never passed an event
// before it was published (or written to the table), in two ways that both fail for a reader
// that confirms what it received rather than what was settled:
//
//   - Every sample of the confirmed position, taken at a moment T, must find each event it has
//     passed (its transaction's end at or below the position) already accepted by the broker
//     at T (SQS SentTimestamp), or already written to the outbox table by T (tabledAt, see
//     recordTabled: what a clean stop had not settled, or released), unless the event went to
//     the table: poison, failures that charged an attempt (S lines), and in ordered mode the
//     later events of their keys, which may have been queued behind them.
//   - Every event a killed relay held without settling it must have been claimed again by
//     another relay: for a streamed one, the next holder streamed it again from the confirmed
//     position, which therefore had not passed it.
func checkWAL(ln *lane, a journal.Analysis, tabledAt map[string]time.Time, broken func(format string, args ...any)) walReport {
	rep := walReport{takes: a.Takes, handovers: a.Handovers, holderKills: a.HolderKills, takeovers: a.Takeovers, notAgain: len(a.NotClaimedAgain), caughtUp: ln.caughtUp}
	for id := range a.Repeatable {
		if !a.InDoubt[id] {
			rep.repeatable++
		}
	}
	if len(a.NotClaimedAgain) > 0 {
		broken("%s: %d events a killed relay held without settling them were never streamed again (nor claimed by another relay), e.g. %v",
			ln.name, len(a.NotClaimedAgain), a.NotClaimedAgain[:min(3, len(a.NotClaimedAgain))])
	}

	samples := ln.slotWatch.snapshot()
	// The highest position seen up to each sample: once seen, it had been confirmed.
	high := make([]int64, len(samples))
	for i, s := range samples {
		high[i] = s.confirmed
		if i > 0 {
			high[i] = max(high[i], high[i-1])
		}
	}
	accepted := map[string]time.Time{}
	for _, d := range ln.consumer.snapshot() {
		if at, ok := accepted[d.msg.ID]; !ok || d.sent.Before(at) {
			accepted[d.msg.ID] = d.sent
		}
	}
	// What went to the table instead of being published: poison, failures that charged an
	// attempt, and in ordered mode every later event of their keys, which the holder may have
	// queued behind them (the blockers' followers among them).
	ln.ledger.mu.Lock()
	tabled := map[string]bool{}
	spilledKey := map[string]bool{}
	for _, m := range ln.ledger.written { // commit order, for keys with one writer
		if ln.spec.ordered && spilledKey[m.Key] {
			tabled[m.ID] = true
		}
		if ln.ledger.poison[m.ID] || a.Spilled[m.ID] {
			tabled[m.ID] = true
			spilledKey[m.Key] = true
		}
	}
	bounds := make(map[string]int64, len(ln.ledger.walBound))
	for id, lsn := range ln.ledger.walBound {
		if !tabled[id] {
			bounds[id] = lsn
		}
	}
	ln.ledger.mu.Unlock()
	var early []string
	for id, lsn := range bounds {
		i, _ := slices.BinarySearch(high, lsn)
		if i == len(high) {
			continue // no sample saw it passed (the last ones came after the relays stopped sampling)
		}
		rep.checked++
		at, ok := accepted[id]
		if tab, inTable := tabledAt[id]; inTable && !tab.After(samples[i].at) {
			continue // written to the table before the position passed it
		}
		if !ok || at.After(samples[i].at) {
			rep.early++
			if len(early) < 3 {
				sent := "never"
				if ok {
					sent = at.Format("15:04:05.000")
				}
				early = append(early, fmt.Sprintf("%s (transaction ended by %s; confirmed past it at %s, at the broker %s)",
					id, formatLSN(lsn), samples[i].at.Format("15:04:05.000"), sent))
			}
		}
	}
	if rep.early > 0 {
		broken("%s: the slot's confirmed position passed %d of %d events before the broker had them, e.g. %s",
			ln.name, rep.early, rep.checked, strings.Join(early, "; "))
	}
	if rep.checked == 0 {
		broken("%s: no sample of the slot's confirmed position passed any event: the check saw nothing", ln.name)
	}
	return rep
}

// takeoverTimes renders the median and longest time from a holder's kill to the next take.
func (w *walReport) takeoverTimes() string {
	if len(w.takeovers) == 0 {
		return "-"
	}
	return fmt.Sprintf("%v, %v", w.takeovers[len(w.takeovers)/2].Round(10*time.Millisecond), w.takeovers[len(w.takeovers)-1].Round(10*time.Millisecond))
}

// walSummary renders the WAL lanes' reports as a Markdown table.
func walSummary(results []result) string {
	var b strings.Builder
	for _, r := range results {
		if r.wal == nil {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("| scenario | slot taken | changed hands | holder kills | taken over after (median, max) | in doubt only because a holder was cut | events checked against the confirmed position | confirmed before the broker had them | unsettled at a kill, not streamed again | confirmed past the last write after |\n")
			b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		}
		w := r.wal
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %d | %d | %d | %d | %v |\n",
			r.name, w.takes, w.handovers, w.holderKills, w.takeoverTimes(), w.repeatable, w.checked, w.early, w.notAgain, w.caughtUp.Round(10*time.Millisecond))
	}
	return b.String()
}
