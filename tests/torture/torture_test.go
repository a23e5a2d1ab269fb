//go:build torture

package torture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestTorture runs every scenario and prints one summary table.
func TestTorture(t *testing.T) {
	admin := adminPool(t)
	sqsServer := startFauxqs(t)
	bin := buildRelay(t, t.TempDir())
	scale := scaleFactor(t)
	var rows summaryRows
	for _, sc := range scenarios {
		sc = sc.scaled(scale)
		t.Run(sc.name, func(t *testing.T) { rows.add(runScenario(t, sc, admin, sqsServer, bin)) })
	}
	table := rows.tables()
	if wal := walSummary(rows.results); wal != "" {
		table += "\n" + wal
	}
	t.Logf("delivery summary:\n%s", table)
	if path := os.Getenv("OUTBOX_TORTURE_SUMMARY"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Errorf("write summary: %v", err)
		}
	}
}

// lane is a running laneSpec.
type lane struct {
	name      string
	spec      laneSpec
	queueName string // as created, without .fifo
	queueURL  string
	scenario  scenario
	outbox    laneDB    // the lane's database, PostgreSQL or MySQL
	db        *database // a PostgreSQL lane's database (outbox too); nil in a MySQL lane
	ledger    *ledger
	fleet     *fleet
	consumer  *consumer
	// WAL lanes: the slot's confirmed position sampled during the run, the WAL position after
	// the last write, and how soon after the drain the slot was confirmed past it.
	slotWatch *slotWatch
	lastWrite int64
	caughtUp  time.Duration
	// proxies carry each relay's replication connection in wal-replication-cut, one per fleet
	// slot.
	proxies []*cutProxy

	mu           sync.Mutex
	cuts         int             // replication cuts of the holder
	cutTakeovers []time.Duration // from each cut to another relay holding the slot
	holderStops  int             // clean stops of the relay holding the slot
}

// laneName is the name of a lane of scenario in the summary, and ident the same as an
// identifier, for the lane's database and queue names.
func laneName(scenario string, spec laneSpec) (name, ident string) {
	name = scenario
	if spec.suffix != "" {
		name += "/" + spec.suffix
	}
	return name, strings.NewReplacer("-", "_", "/", "_").Replace(name)
}

// startLane creates a lane's schema and queue and starts its consumer and relays.
// A scenario with a private broker publishes to it instead of SQS.
func startLane(t *testing.T, sc scenario, spec laneSpec, admin *pgxpool.Pool, pgURL string, sqsServer *fauxqs, broker privateBroker, bin, dir, suffix string) *lane {
	t.Helper()
	name, ident := laneName(sc.name, spec)
	ln := &lane{name: name, spec: spec, scenario: sc, ledger: newLedger()}
	ln.db = newDatabase(t, admin, pgURL, "torture_"+ident+"_"+suffix, spec.wal)
	ln.outbox = ln.db
	ln.queueName = strings.ReplaceAll(ident, "_", "-") + "-" + suffix
	var destination []string
	if broker != nil {
		destination = broker.destination(t, ln)
	} else {
		ln.queueURL = sqsServer.createQueue(t, ln.queueName, spec.ordered)
		destination = []string{"-queue-url", ln.queueURL, "-endpoint", sqsServer.endpoint}
	}
	args := append([]string{"-postgres-url", pgURL, "-schema", ln.db.schema}, destination...)
	args = append(args,
		"-lease", spec.lease.String(), "-batch-size", fmt.Sprint(spec.batch), "-concurrency", fmt.Sprint(spec.concurrency),
		"-partial-failure-rate", fmt.Sprint(sc.partialRate), "-call-failure-rate", fmt.Sprint(sc.callRate),
	)
	if spec.ordered {
		args = append(args, "-ordered")
	}
	var slotArgs func(i int) []string // each relay's own flags: how to tell the holder
	if spec.wal {
		args = append(args, walFlags...)
		ln.db.recordTabled(t)
		ln.slotWatch = watchSlot(admin, ln.db.slot)
		t.Cleanup(ln.slotWatch.stop)
		if sc.replicationCuts > 0 {
			ln.proxies, slotArgs = replicationProxies(t, pgURL, spec.relays)
		} else {
			var err error
			if slotArgs, err = appNameFlags(pgURL, spec.relays); err != nil {
				t.Fatalf("PostgreSQL URL: %v", err)
			}
		}
	}
	args = append(args, spec.flags...)
	args = append(args, spec.sabotage...)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if broker != nil {
		ln.consumer = broker.consume(ln)
	} else {
		ln.consumer = startConsumer(sqsServer.client(), ln.queueURL, 2)
	}
	t.Cleanup(ln.consumer.stop)
	ln.fleet = newFleet(t, bin, dir, spec.relays, args, slotArgs)
	return ln
}

// runScenario runs one scenario: it starts its lanes, writes while injecting its faults, waits
// for every lane to drain, stops the relays and checks every lane.
func runScenario(t *testing.T, sc scenario, admin *pgxpool.Pool, sqsServer *fauxqs, bin string) ([]result, []recovery) {
	ctx, cancel := context.WithTimeout(context.Background(), sc.duration+5*time.Minute)
	defer cancel()
	pgURL := postgresURL()
	var restartPG func()
	switch {
	case sc.privatePostgres:
		srv := startPrivatePostgres(t)
		pgURL, admin = srv.url(), srv.pool(t)
		restartPG = func() { srv.restart(t) }
	case sc.pgRestartAt > 0:
		cluster := pgCluster(t)
		restartPG = func() { restartPostgres(t, cluster) }
	}
	dir := t.TempDir()
	suffix := randomSuffix()
	broker := startBroker(t, sc.broker)

	lanes := make([]*lane, len(sc.lanes))
	for i, spec := range sc.lanes {
		lanes[i] = startLane(t, sc, spec, admin, pgURL, sqsServer, broker, bin, filepath.Join(dir, fmt.Sprint(i)), suffix)
	}

	// Write, and meanwhile inject the faults.
	stopWriting := make(chan struct{})
	waits := startWriting(t, ctx, lanes, sc.rate, stopWriting)
	var outage window // of the SQS freeze or the missing queues; set before faults.Wait returns
	start := time.Now()
	var faults sync.WaitGroup
	if sc.kills > 0 {
		faults.Go(func() { killRandomly(t, ctx, lanes, sc.kills, sc.duration) })
	}
	if sc.pauses > 0 {
		faults.Go(func() { pauseRandomly(t, ctx, lanes, sc.pauses, sc.duration) })
	}
	if sc.cleanStops > 0 {
		faults.Go(func() { stopCleanly(t, ctx, lanes, sc.cleanStops, sc.duration) })
	}
	if sc.replicationCuts > 0 {
		faults.Go(func() { cutReplication(t, ctx, lanes, sc.replicationCuts, sc.duration) })
	}
	if sc.pgRestartAt > 0 {
		faults.Go(func() {
			if !sleep(ctx, sc.pgRestartAt) {
				return
			}
			restartPG()
		})
	}
	if sc.sqsFreezeAt > 0 {
		faults.Go(func() {
			if !sleep(ctx, sc.sqsFreezeAt) {
				return
			}
			outage = freezeSQS(t, ctx, sqsServer, sc.downtime())
		})
	}
	if sc.brokerRestarts > 0 {
		faults.Go(func() { restartBroker(t, ctx, broker, sc.brokerRestarts, start, sc.duration) })
	}
	if sc.queueMissingAt > 0 {
		faults.Go(func() {
			if !sleep(ctx, sc.queueMissingAt) {
				return
			}
			outage = removeQueues(t, ctx, lanes, sqsServer)
		})
	}
	sleep(ctx, sc.duration)
	close(stopWriting)
	for i, wait := range waits {
		if err := wait(); err != nil {
			t.Errorf("%s writers: %v", lanes[i].name, err)
		}
	}
	faults.Wait()
	t.Logf("writing and faults done after %v", time.Since(start).Round(time.Millisecond))
	for _, ln := range lanes {
		if ln.spec.wal {
			lsn, err := walInsertPosition(ctx, admin)
			if err != nil {
				t.Fatalf("%s: WAL position after the last write: %v", ln.name, err)
			}
			ln.lastWrite = lsn
		}
	}

	// Drain: every committed event arrives and the outbox empties.
	drain(t, ctx, sc.control, lanes)
	// WAL lanes: the holder does confirm; it has settled everything (the reader must not stop
	// confirming, nor hold the WAL behind its last event).
	for _, ln := range lanes {
		if ln.spec.wal && !sc.control {
			d, err := ln.waitConfirmed(ctx, ln.lastWrite)
			if err != nil {
				t.Error(err)
			}
			ln.caughtUp = d
		}
	}
	stopLanes(t, ctx, lanes)

	results := checkLanes(t, sc, lanes)
	var recs []recovery
	if sc.recovery && !outage.ended.IsZero() {
		recs = checkRecovery(t, lanes, outage)
	}
	return results, recs
}

// startWriting starts every lane's writers, contended ones where its spec says so, at rate
// transactions per second until stop is closed, and returns what waits for each lane's.
func startWriting(t *testing.T, ctx context.Context, lanes []*lane, rate float64, stop chan struct{}) []func() error {
	waits := make([]func() error, len(lanes))
	for i, ln := range lanes {
		seed := uint64(i+1) * uint64(time.Now().UnixNano())
		if c := ln.spec.contention; c != nil {
			wait, err := startContenders(ctx, ln.name, ln.outbox, ln.ledger, *c, rate, seed, stop)
			if err != nil {
				close(stop)
				t.Fatalf("%s: %v", ln.name, err)
			}
			waits[i] = wait
			continue
		}
		withBlocker := ln.spec.ordered && len(ln.spec.sabotage) == 0
		waits[i] = startWriters(ctx, ln.name, ln.outbox, ln.ledger, rate, withBlocker, seed, stop)
	}
	return waits
}

// drain waits until every committed event arrived and the outboxes emptied (in a control
// scenario briefly: the lost events never come). Ordered lanes hold a dead event at the head
// of a shared key: it held back that key only (every other event arrived); purged, the key
// flows again.
func drain(t *testing.T, ctx context.Context, control bool, lanes []*lane) {
	drainTimeout := 2 * time.Minute
	if control {
		drainTimeout = 10 * time.Second // the lost events never come
	}
	if err := waitDrained(ctx, lanes, drainTimeout); err != nil && !control {
		t.Error(err)
	}
	for _, ln := range lanes {
		if releaseBlockedKeys(t, ctx, ln) {
			if err := waitDrained(ctx, []*lane{ln}, time.Minute); err != nil {
				t.Errorf("after purging the blockers: %v", err)
			}
		}
	}
}

// stopLanes waits a little more for duplicates still on their way, then stops every lane's
// relays, as a deployment would, and its consumer.
func stopLanes(t *testing.T, ctx context.Context, lanes []*lane) {
	sleep(ctx, 2*time.Second)
	for _, ln := range lanes {
		if ln.slotWatch != nil {
			ln.slotWatch.stop()
		}
		for _, err := range ln.fleet.stop(20 * time.Second) {
			t.Errorf("%s: %v", ln.name, err)
		}
		ln.consumer.stop()
	}
}

// checkLanes checks every lane of a scenario and logs what happened in it. A control lane
// passes when the checker reports the breakage its relay was given.
func checkLanes(t *testing.T, sc scenario, lanes []*lane) []result {
	results := make([]result, len(lanes))
	for i, ln := range lanes {
		var broken []string
		results[i] = check(t, ln, func(format string, args ...any) {
			broken = append(broken, fmt.Sprintf(format, args...))
		})
		if !sc.control {
			for _, b := range broken {
				t.Error(b)
			}
		} else {
			all := strings.Join(broken, "\n")
			for _, want := range ln.spec.expect {
				if !strings.Contains(all, want) {
					t.Errorf("%s: the checker did not report %q for a relay broken with %v; it reported: %s", ln.name, want, ln.spec.sabotage, all)
				}
			}
			t.Logf("%s: the checker caught the relay broken with %v: %s", ln.name, ln.spec.sabotage, all)
		}
		r := results[i]
		ln.consumer.mu.Lock()
		redelivered, consumerErrs := ln.consumer.redelivered, ln.consumer.errors
		ln.consumer.mu.Unlock()
		st := ln.fleet.finalStats()
		t.Logf("%s: the relays running at the end published %d events in %d batches, retried %d failed publishes and dead-lettered %d",
			ln.name, st.Published, st.Batches, st.Failed, st.Dead)
		t.Logf("%s: %d events written in %d transactions (%d rolled back, %d retried after a database error, %d committed despite a failed COMMIT); "+
			"%d delivered, %d duplicates, %d in doubt, %d lost, %d dead, %d held back by a dead head of their key until it was purged, max lag %v; %d kills, %d pauses, %d claims; consumer: %d broker redeliveries, %d errors",
			r.name, r.written, ln.ledger.commits, ln.ledger.rollbacks, r.retried, r.uncertain,
			r.delivered, r.duplicates, r.inDoubt, r.lost, r.dead, ln.ledger.heldBack, r.maxLag.Round(time.Millisecond), r.kills, ln.fleet.pauseCount(), r.claims, redelivered, consumerErrs)
		if w := r.wal; w != nil {
			t.Logf("%s: WAL mode: the slot was taken %d times, %d of them by another relay than the last holder; %d of the %d kills hit the holder, taken over after (median, max) %s; "+
				"%d events in doubt only because a holder was cut before confirming them; the confirmed position passed %d of %d events sampled before the broker had them; "+
				"%d events a killed relay held unsettled were not streamed again; confirmed past the last write %v after the drain",
				r.name, w.takes, w.handovers, w.holderKills, r.kills, w.takeoverTimes(), w.repeatable, w.early, w.checked, w.notAgain, w.caughtUp.Round(time.Millisecond))
			t.Logf("%s: WAL mode: %d events (poison aside) written to the outbox table by a relay; %d claims by a relay not holding the slot, %d of their messages not in the table; "+
				"%d acknowledged events handed out again, %d of them outside the doubt set",
				r.name, w.tabled, w.outsideClaims, w.notHolding, w.reclaimed, w.resent)
		}
		if stops := ln.fleet.stopCount(); stops > 0 {
			ln.mu.Lock()
			t.Logf("%s: %d clean stops (SIGTERM, then a restart), %d of them of the relay holding the slot", r.name, stops, ln.holderStops)
			ln.mu.Unlock()
		}
		if len(ln.proxies) > 0 {
			ln.mu.Lock()
			cuts, taken := ln.cuts, len(ln.cutTakeovers)
			ln.mu.Unlock()
			t.Logf("%s: the holder's replication path cut %d times for %v, its pool working; another relay held the slot after %d of them, after (median, max) %s",
				r.name, cuts, replicationCut, taken, ln.cutTimes())
		}
	}
	return results
}

// waitDrained waits until every lane's consumer has every committed event but poison and
// what blockers hold back, and no event is pending in its outbox but those held back.
func waitDrained(ctx context.Context, lanes []*lane, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		done := true
		var status []string
		for _, ln := range lanes {
			want := ln.ledger.expected()
			_, held := ln.ledger.blocked()
			got := ln.consumer.has(want)
			counts, err := ln.outbox.inspector().Counts(ctx)
			pending := fmt.Sprint(counts.Pending)
			if err != nil {
				pending = err.Error()
			}
			settled := err == nil && counts.Pending == int64(len(held))
			if err == nil && ln.spec.wal && counts.Pending > int64(len(held)) {
				// A new holder streams again what the last one published but had not
				// confirmed, and an event of a key with a dead head goes to the table behind it,
				// although it arrived already: a duplicate waiting for the purge.
				var stuck int
				if stuck, err = ln.pendingUndelivered(ctx, held); err != nil {
					pending = err.Error()
				}
				settled = err == nil && stuck == 0
			}
			status = append(status, fmt.Sprintf("%s: %d of %d delivered, pending %s (want %d held back)", ln.name, got, len(want), pending, len(held)))
			if got < len(want) || !settled {
				done = false
			}
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) || !sleep(ctx, 250*time.Millisecond) {
			return fmt.Errorf("not drained after %v: %s", timeout, strings.Join(status, "; "))
		}
	}
}

// pendingUndelivered counts the lane's pending rows that are neither held back (held) nor
// delivered already.
func (ln *lane) pendingUndelivered(ctx context.Context, held []string) (int, error) {
	rows, err := ln.db.admin.Query(ctx, "SELECT id::text FROM "+ln.db.table("outbox")+" WHERE status = 'pending'")
	if err != nil {
		return 0, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	heldBack := make(map[string]bool, len(held))
	for _, id := range held {
		heldBack[id] = true
	}
	n := 0
	for _, id := range ids {
		if !heldBack[id] && ln.consumer.has([]string{id}) == 0 {
			n++
		}
	}
	return n, nil
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
