//go:build torture

package torture

import (
	"context"
	"database/sql"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// mysqlScenario is one fault injected while the writers write into MySQL (MariaDB) outboxes.
// Its lanes are the PostgreSQL scenarios' laneSpecs (but wal, which is PostgreSQL's).
type mysqlScenario struct {
	name     string
	lanes    []laneSpec
	duration time.Duration // how long the writers write; faults happen meanwhile
	rate     float64       // transactions per second per lane (each carries 1-3 events)
	kills    int           // SIGKILLs of a random relay, at random moments
	// restarts are when, into the run, the scenario's private MariaDB is stopped for
	// pgDowntime, just after a surge of events: a normal shutdown first, then a crash
	// (SIGKILL), in turn. A scenario with
	// restarts runs on a server of its own (startPrivateMariaDB); the others on the machine's.
	restarts []time.Duration
	// sqsFreezeAt is when the SQS server is frozen, for sqsDown; 0 for never.
	sqsFreezeAt, sqsDown time.Duration
	// recovery measures how soon the relays publish again after the freeze (checkRecovery).
	recovery    bool
	partialRate float64 // fault kit rate inside the relay processes
	killsOnly   bool    // duplicates are bounded by what the kills cut
	// control runs deliberately broken relays (laneSpec.sabotage): the scenario passes only if
	// the checker reports what each breaks.
	control bool
}

// mysqlScenarios are sized to run in under three minutes together on a 2-core machine.
var mysqlScenarios = []mysqlScenario{
	{name: "mysql-relay-sigkill", lanes: []laneSpec{named(ordered(2), "ordered"), named(unordered(2), "unordered")},
		duration: 22 * time.Second, rate: 25, kills: 20, killsOnly: true},
	// The database shut down and, later, crashed while relays claim and writers commit: a
	// COMMIT whose answer was lost may have committed (the writer's business row says), and
	// every committed event arrives, in key order.
	{name: "mysql-restart", lanes: []laneSpec{ordered(2)}, duration: 22 * time.Second, rate: 30,
		restarts: []time.Duration{6 * time.Second, 14 * time.Second}},
	{name: "mysql-sqs-outage", lanes: []laneSpec{unordered(2)}, duration: 22 * time.Second, rate: 40,
		sqsFreezeAt: 7 * time.Second, sqsDown: sqsDowntime, recovery: true},
	// Writers sharing keys, each holding its transaction open for a random moment after Add:
	// per-key order must follow commit order, while relays are killed.
	{name: "mysql-ordered-contention", lanes: []laneSpec{named(contended(ordered(2), 20, 4, 2), "two-writers"), named(contended(ordered(2), 5, 4, 4), "hot-keys")},
		duration: 24 * time.Second, rate: 30, kills: 10, killsOnly: true},
	// Relays broken on purpose, each in a way one of the checks must catch on MySQL.
	{name: "mysql-control", lanes: []laneSpec{
		// Batches of 5: the relays poll (no wake-up crosses processes on MySQL), so batches are
		// larger than PostgreSQL's, and the second publish of a batch happens only when the
		// fault kit failed none of it in the first.
		broken(smallBatches(unordered(1), 5), "ack-first-publish-twice", []string{"-ack-before-publish", "-publish-twice"},
			"were never delivered", "delivered more than once although"),
		broken(unordered(2), "one-ms-leases", []string{"-short-claim-lease"}, "took messages another relay held"),
		// The commit-order check on contended hot keys, with a relay that ignores order.
		broken(contended(ordered(1), 5, 4, 4), "contended-reversed", []string{"-ordered=false", "-reverse-batches"}, "per-key order violations"),
	}, duration: 10 * time.Second, rate: 40, partialRate: 0.2, control: true},
}

func smallBatches(l laneSpec, n int) laneSpec { l.batch = n; return l }

// TestTortureMySQL runs the MySQL scenarios against MariaDB and prints their summary table.
func TestTortureMySQL(t *testing.T) {
	admin := mysqlAdmin(t)
	sqsServer := startFauxqs(t)
	bin := buildRelay(t, t.TempDir())
	scale := scaleFactor(t)
	var rows summaryRows
	for _, sc := range mysqlScenarios {
		sc = sc.scaled(scale)
		t.Run(sc.name, func(t *testing.T) { rows.add(runMySQLScenario(t, sc, admin, sqsServer, bin)) })
	}
	t.Logf("MySQL (MariaDB) delivery summary:\n%s", rows.tables())
}

// scaled is scenario.scaled for a MySQL scenario.
func (sc mysqlScenario) scaled(factor float64) mysqlScenario {
	sc.duration = time.Duration(float64(sc.duration) * factor)
	if sc.kills > 0 {
		sc.kills = max(1, int(float64(sc.kills)*factor))
	}
	// Writing goes on for 5 s after each fault has ended.
	for _, at := range sc.restarts {
		sc.duration = max(sc.duration, at+pgDowntime+5*time.Second)
	}
	if sc.sqsFreezeAt > 0 {
		sc.duration = max(sc.duration, sc.sqsFreezeAt+sc.sqsDown+5*time.Second)
	}
	return sc
}

// view is the scenario as the shared checks see it (checkLanes, check).
func (sc mysqlScenario) view() scenario {
	return scenario{name: sc.name, killsOnly: sc.killsOnly, control: sc.control}
}

// startMySQLLane creates a lane's database and queue and starts its consumer and relays.
func startMySQLLane(t *testing.T, sc mysqlScenario, spec laneSpec, admin *sql.DB, serverURL string, sqsServer *fauxqs, bin, dir, suffix string) *lane {
	t.Helper()
	name, ident := laneName(sc.name, spec)
	ln := &lane{name: name, spec: spec, scenario: sc.view(), ledger: newLedger()}
	db := newMySQLDatabase(t, admin, serverURL, "outbox_test_"+ident+"_"+suffix)
	ln.outbox = db
	ln.queueName = strings.ReplaceAll(ident, "_", "-") + "-" + suffix
	ln.queueURL = sqsServer.createQueue(t, ln.queueName, spec.ordered)
	args := []string{"-store", "mysql", "-mysql-url", db.url, "-queue-url", ln.queueURL, "-endpoint", sqsServer.endpoint,
		"-lease", spec.lease.String(), "-batch-size", fmt.Sprint(spec.batch), "-concurrency", fmt.Sprint(spec.concurrency),
		"-partial-failure-rate", fmt.Sprint(sc.partialRate),
	}
	if spec.ordered {
		args = append(args, "-ordered")
	}
	args = append(args, spec.flags...)
	args = append(args, spec.sabotage...)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln.consumer = startConsumer(sqsServer.client(), ln.queueURL, 2)
	t.Cleanup(ln.consumer.stop)
	ln.fleet = newFleet(t, bin, dir, spec.relays, args, nil)
	return ln
}

// runMySQLScenario runs one MySQL scenario: it starts its lanes, writes while injecting its
// faults, waits for every lane to drain, stops the relays and checks every lane.
func runMySQLScenario(t *testing.T, sc mysqlScenario, admin *sql.DB, sqsServer *fauxqs, bin string) ([]result, []recovery) {
	ctx, cancel := context.WithTimeout(context.Background(), sc.duration+5*time.Minute)
	defer cancel()
	serverURL := mysqlServerURL()
	var srv *privateMariaDB
	if len(sc.restarts) > 0 {
		srv = startPrivateMariaDB(t)
		serverURL = srv.url("")
		var err error
		if admin, err = openMySQL(serverURL); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = admin.Close() })
	}
	dir := t.TempDir()
	suffix := randomSuffix()
	lanes := make([]*lane, len(sc.lanes))
	for i, spec := range sc.lanes {
		lanes[i] = startMySQLLane(t, sc, spec, admin, serverURL, sqsServer, bin, filepath.Join(dir, fmt.Sprint(i)), suffix)
	}

	// Write, and meanwhile inject the faults.
	stopWriting := make(chan struct{})
	waits := startWriting(t, ctx, lanes, sc.rate, stopWriting)
	var outage window // of the SQS freeze; set before faults.Wait returns
	start := time.Now()
	var faults sync.WaitGroup
	if sc.kills > 0 {
		faults.Go(func() { killRandomly(t, ctx, lanes, sc.kills, sc.duration) })
	}
	if len(sc.restarts) > 0 {
		surgers := make([]*writer, len(lanes))
		for i, ln := range lanes {
			surgers[i] = surger(ln)
		}
		faults.Go(func() {
			for i, at := range sc.restarts {
				if !sleep(ctx, time.Until(start.Add(at))) {
					return
				}
				// A surge first, so that the relays most likely hold batches in flight when the
				// server goes.
				for _, w := range surgers {
					if err := w.commit(ctx, i, burst); err != nil {
						t.Errorf("%s: surge: %v", w.lane, err)
					}
				}
				sleep(ctx, time.Duration(mrand.IntN(40))*time.Millisecond)
				srv.restart(t, i%2 == 1)
			}
		})
	}
	if sc.sqsFreezeAt > 0 {
		faults.Go(func() {
			if !sleep(ctx, sc.sqsFreezeAt) {
				return
			}
			outage = freezeSQS(t, ctx, sqsServer, sc.sqsDown)
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

	// Drain: every committed event arrives and the outbox empties.
	drain(t, ctx, sc.control, lanes)
	stopLanes(t, ctx, lanes)

	results := checkLanes(t, sc.view(), lanes)
	var recs []recovery
	if sc.recovery && !outage.ended.IsZero() {
		recs = checkRecovery(t, lanes, outage)
	}
	return results, recs
}
