//go:build torture

package torture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// laneSpec is one outbox of a scenario: its own schema, queue, relays, writers and consumer.
type laneSpec struct {
	suffix      string // appended to the scenario name in the summary; "" for a single lane
	ordered     bool   // ordered relays and a FIFO queue
	relays      int
	batch       int
	concurrency int
	lease       time.Duration
	// sabotage are relayproc flags that break the relay on purpose (control lanes only), and
	// expect are the broken promises the checker must then report (parts of its reports).
	sabotage []string
	expect   []string
}

// scenario is one fault (or all of them) injected while the writers write.
type scenario struct {
	name     string
	lanes    []laneSpec
	duration time.Duration // how long the writers write; faults happen meanwhile
	rate     float64       // transactions per second per lane (each carries 1-3 events)
	kills    int           // SIGKILLs of a random relay, at random moments
	// pgRestartAt and sqsFreezeAt are when, into the run, PostgreSQL is stopped (for
	// pgDowntime, then started) and the SQS server frozen (for sqsDowntime); 0 for never.
	pgRestartAt, sqsFreezeAt time.Duration
	partialRate, callRate    float64 // fault kit rates inside the relay processes
	noDuplicates             bool    // no kill and no outage: any duplicate is a failure
	killsOnly                bool    // duplicates are bounded by what the kills cut
	// control runs deliberately broken relays (laneSpec.sabotage): the scenario passes only if
	// the checker reports what each breaks, proving that it is not blind.
	control bool
}

const (
	pgDowntime  = 3 * time.Second
	sqsDowntime = 10 * time.Second
)

func unordered(relays int) laneSpec {
	return laneSpec{relays: relays, batch: 50, concurrency: 2, lease: 3 * time.Second}
}

func ordered(relays int) laneSpec {
	l := unordered(relays)
	l.ordered = true
	return l
}

func named(l laneSpec, suffix string) laneSpec { l.suffix = suffix; return l }

func longLease(l laneSpec) laneSpec { l.lease = 10 * time.Second; return l }

// scenarios are sized to run in about six minutes on a 2-core machine; scale rate and duration
// together, never drop a fault.
var scenarios = []scenario{
	{name: "relay-sigkill", lanes: []laneSpec{unordered(1)}, duration: 45 * time.Second, rate: 40, kills: 50, killsOnly: true},
	{name: "postgres-restart", lanes: []laneSpec{ordered(2)}, duration: 25 * time.Second, rate: 40, pgRestartAt: 8 * time.Second},
	{name: "sqs-outage", lanes: []laneSpec{unordered(2)}, duration: 30 * time.Second, rate: 40, sqsFreezeAt: 8 * time.Second},
	{name: "four-relays-sigkill", lanes: []laneSpec{named(ordered(4), "ordered"), named(unordered(4), "unordered")},
		duration: 40 * time.Second, rate: 25, kills: 30, killsOnly: true},
	// Two relays share each outbox with a lease far longer than any publish here: a duplicate
	// would mean both published one message.
	{name: "partial-failures", lanes: []laneSpec{named(longLease(ordered(2)), "ordered"), named(longLease(unordered(2)), "unordered")},
		duration: 25 * time.Second, rate: 25, partialRate: 0.2, callRate: 0.05, noDuplicates: true},
	{name: "control", lanes: []laneSpec{
		func() laneSpec {
			l := unordered(1)
			l.suffix, l.sabotage = "ack-first-publish-twice", []string{"-ack-before-publish", "-publish-twice"}
			l.expect = []string{"were never delivered", "delivered more than once although"}
			return l
		}(),
		func() laneSpec {
			l := ordered(1) // FIFO queue and order check, but the relay runs unordered
			l.suffix, l.sabotage = "reversed-batches", []string{"-ordered=false", "-reverse-batches"}
			l.expect = []string{"per-key order violations"}
			return l
		}(),
		func() laneSpec {
			l := unordered(2)
			l.suffix, l.sabotage = "one-ms-leases", []string{"-short-claim-lease"}
			l.expect = []string{"took messages another relay held"}
			return l
		}(),
	}, duration: 10 * time.Second, rate: 40, partialRate: 0.2, control: true},
	{name: "mixed", lanes: []laneSpec{named(ordered(2), "ordered"), named(unordered(2), "unordered")},
		duration: 50 * time.Second, rate: 25, kills: 20, pgRestartAt: 30 * time.Second, sqsFreezeAt: 10 * time.Second, partialRate: 0.1, callRate: 0.02},
}

// scaled shortens or lengthens the writing phase and the number of kills by factor (the
// OUTBOX_TORTURE_SCALE variable, for quick runs by hand); fault moments and outage lengths stay.
func (sc scenario) scaled(factor float64) scenario {
	sc.duration = time.Duration(float64(sc.duration) * factor)
	if sc.kills > 0 {
		sc.kills = max(1, int(float64(sc.kills)*factor))
	}
	for _, at := range []time.Duration{sc.pgRestartAt, sc.sqsFreezeAt} {
		sc.duration = max(sc.duration, at+5*time.Second)
	}
	return sc
}

// TestTorture runs every scenario and prints one summary table.
func TestTorture(t *testing.T) {
	admin := adminPool(t)
	sqsServer := startFauxqs(t)
	bin := buildRelay(t, t.TempDir())
	scale := 1.0
	if v := os.Getenv("OUTBOX_TORTURE_SCALE"); v != "" {
		var err error
		if scale, err = strconv.ParseFloat(v, 64); err != nil || scale <= 0 || scale > 10 {
			t.Fatalf("OUTBOX_TORTURE_SCALE=%q: want a number in (0, 10]", v)
		}
	}
	var results []result
	for _, sc := range scenarios {
		sc = sc.scaled(scale)
		t.Run(sc.name, func(t *testing.T) {
			results = append(results, runScenario(t, sc, admin, sqsServer, bin)...)
		})
	}
	table := summary(results)
	t.Logf("delivery summary:\n%s", table)
	if path := os.Getenv("OUTBOX_TORTURE_SUMMARY"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Errorf("write summary: %v", err)
		}
	}
}

// lane is a running laneSpec.
type lane struct {
	name     string
	spec     laneSpec
	scenario scenario
	db       *database
	ledger   *ledger
	fleet    *fleet
	consumer *consumer
}

func runScenario(t *testing.T, sc scenario, admin *pgxpool.Pool, sqsServer *fauxqs, bin string) []result {
	ctx, cancel := context.WithTimeout(context.Background(), sc.duration+5*time.Minute)
	defer cancel()
	var cluster []string
	if sc.pgRestartAt > 0 {
		cluster = pgCluster(t)
	}
	dir := t.TempDir()
	suffix := randomSuffix()

	lanes := make([]*lane, len(sc.lanes))
	for i, spec := range sc.lanes {
		name := sc.name
		if spec.suffix != "" {
			name += "/" + spec.suffix
		}
		ident := strings.NewReplacer("-", "_", "/", "_").Replace(name)
		ln := &lane{name: name, spec: spec, scenario: sc, ledger: newLedger()}
		ln.db = newDatabase(t, admin, "torture_"+ident+"_"+suffix)
		queue := sqsServer.createQueue(t, strings.ReplaceAll(ident, "_", "-")+"-"+suffix, spec.ordered)
		args := []string{
			"-postgres-url", postgresURL(), "-schema", ln.db.schema,
			"-queue-url", queue, "-endpoint", sqsServer.endpoint,
			"-lease", spec.lease.String(), "-batch-size", fmt.Sprint(spec.batch), "-concurrency", fmt.Sprint(spec.concurrency),
			"-partial-failure-rate", fmt.Sprint(sc.partialRate), "-call-failure-rate", fmt.Sprint(sc.callRate),
		}
		if spec.ordered {
			args = append(args, "-ordered")
		}
		args = append(args, spec.sabotage...)
		laneDir := filepath.Join(dir, fmt.Sprint(i))
		if err := os.MkdirAll(laneDir, 0o755); err != nil {
			t.Fatal(err)
		}
		ln.consumer = startConsumer(sqsServer.client(), queue, 2)
		t.Cleanup(ln.consumer.stop)
		ln.fleet = newFleet(t, bin, laneDir, spec.relays, args)
		lanes[i] = ln
	}

	// Write, and meanwhile inject the faults.
	stopWriting := make(chan struct{})
	waits := make([]func() error, len(lanes))
	for i, ln := range lanes {
		waits[i] = startWriters(ctx, ln.name, ln.db, ln.ledger, sc.rate, uint64(i+1)*uint64(time.Now().UnixNano()), stopWriting)
	}
	start := time.Now()
	var faults sync.WaitGroup
	if sc.kills > 0 {
		faults.Go(func() { killRandomly(t, ctx, lanes, sc.kills, sc.duration) })
	}
	if sc.pgRestartAt > 0 {
		faults.Go(func() {
			if !sleep(ctx, sc.pgRestartAt) {
				return
			}
			restartPostgres(t, cluster)
		})
	}
	if sc.sqsFreezeAt > 0 {
		faults.Go(func() {
			if !sleep(ctx, sc.sqsFreezeAt) {
				return
			}
			t.Logf("freezing the SQS server (SIGSTOP) for %v", sqsDowntime)
			sqsServer.freeze(t)
			sleep(ctx, sqsDowntime)
			sqsServer.thaw(t)
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

	// Drain: every committed event arrives and the outbox empties. Then wait a little more for
	// duplicates still on their way, and stop the relays as a deployment would.
	drainTimeout := 2 * time.Minute
	if sc.control {
		drainTimeout = 10 * time.Second // the lost events never come
	}
	if err := waitDrained(ctx, lanes, drainTimeout); err != nil && !sc.control {
		t.Error(err)
	}
	sleep(ctx, 2*time.Second)
	for _, ln := range lanes {
		for _, err := range ln.fleet.stop(20 * time.Second) {
			t.Errorf("%s: %v", ln.name, err)
		}
		ln.consumer.stop()
	}

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
		t.Logf("%s: %d events written in %d transactions (%d rolled back, %d retried after a database error, %d committed despite a failed COMMIT); "+
			"%d delivered, %d duplicates, %d in doubt, %d lost, %d dead, max lag %v; %d kills, %d claims; consumer: %d broker redeliveries, %d errors",
			r.name, r.written, ln.ledger.commits, ln.ledger.rollbacks, r.retried, r.uncertain,
			r.delivered, r.duplicates, r.inDoubt, r.lost, r.dead, r.maxLag.Round(time.Millisecond), r.kills, r.claims, redelivered, consumerErrs)
	}
	return results
}

// killRandomly SIGKILLs a random relay of a random lane n times, at random moments spread over
// about d, restarting each at once.
func killRandomly(t *testing.T, ctx context.Context, lanes []*lane, n int, d time.Duration) {
	gap := d / time.Duration(n)
	for range n {
		if !sleep(ctx, time.Duration(float64(gap)*(0.5+mrand.Float64()))) {
			return
		}
		ln := lanes[mrand.IntN(len(lanes))]
		if err := ln.fleet.kill(mrand.IntN(ln.spec.relays)); err != nil {
			t.Errorf("%s: %v", ln.name, err)
		}
	}
}

// restartPostgres stops the cluster, keeps it down for pgDowntime and starts it again.
func restartPostgres(t *testing.T, cluster []string) {
	t.Logf("stopping PostgreSQL %v for %v", cluster, pgDowntime)
	began := time.Now()
	if err := pgctl(cluster, "stop"); err != nil {
		t.Errorf("%v", err)
		return
	}
	time.Sleep(pgDowntime)
	// Start even if the test is ending: other users of the server need it back.
	for attempt := 1; ; attempt++ {
		err := pgctl(cluster, "start")
		if err == nil {
			break
		}
		if attempt == 5 {
			t.Errorf("%v", err)
			return
		}
		time.Sleep(time.Second)
	}
	t.Logf("PostgreSQL back after %v", time.Since(began).Round(time.Millisecond))
}

// waitDrained waits until every lane's consumer has every committed non-poison event and no
// event is pending in its outbox.
func waitDrained(ctx context.Context, lanes []*lane, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		done := true
		var status []string
		for _, ln := range lanes {
			ln.ledger.mu.Lock()
			var want []string
			for _, m := range ln.ledger.written {
				if !ln.ledger.poison[m.ID] {
					want = append(want, m.ID)
				}
			}
			ln.ledger.mu.Unlock()
			got := ln.consumer.has(want)
			counts, err := ln.db.store.Counts(ctx)
			pending := fmt.Sprint(counts.Pending)
			if err != nil {
				pending = err.Error()
			}
			status = append(status, fmt.Sprintf("%s: %d of %d delivered, pending %s", ln.name, got, len(want), pending))
			if got < len(want) || err != nil || counts.Pending > 0 {
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

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
