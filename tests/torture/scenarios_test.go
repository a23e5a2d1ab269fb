//go:build torture

package torture

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// laneSpec is one outbox of a scenario: its own schema, queue, relays, writers and consumer.
type laneSpec struct {
	suffix      string // appended to the scenario name in the summary; "" for a single lane
	ordered     bool   // ordered relays and a FIFO queue
	relays      int
	batch       int
	concurrency int
	lease       time.Duration
	// wal runs the lane's store in WAL mode (postgres.WALConfig): the writers emit their events
	// into the WAL, one relay's reader holds the slot and streams, the others stand by.
	wal bool
	// contention, when set, replaces the usual writers with writers sharing keys (see
	// contention): the lane then checks per-key commit order under concurrent writers.
	contention *contention
	// flags are extra relayproc flags (retry settings).
	flags []string
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
	pauses   int           // SIGSTOPs of a random relay for relayPause, at random moments
	// cleanStops are, per lane, SIGTERMs of a relay (the slot's holder two times in three, in
	// WAL lanes), each restarted once it exited, at random moments (see stopCleanly).
	cleanStops int
	// replicationCuts are cuts of the replication path of each WAL lane's slot holder, its pool
	// left working: every relay's replication connection goes through a proxy of its own,
	// which closes its connections and refuses new ones for replicationCut (see cutReplication).
	replicationCuts int
	// pgRestartAt and sqsFreezeAt are when, into the run, PostgreSQL is stopped (for
	// pgDowntime, then started) and the SQS server frozen (for sqsDowntime); 0 for never.
	pgRestartAt, sqsFreezeAt time.Duration
	// privatePostgres runs the scenario against a PostgreSQL server of its own
	// (startPrivatePostgres), the one pgRestartAt restarts, instead of the machine's.
	privatePostgres bool
	// sqsDown is how long the SQS server stays frozen (default sqsDowntime).
	sqsDown time.Duration
	// queueMissingAt is when every lane's queue is deleted, to be created again queueMissing
	// later; 0 for never.
	queueMissingAt time.Duration
	// recovery measures, per lane, how soon the relays publish again after the outage (the
	// thaw, or the queues' return) and how soon delivery is back to full rate (see
	// checkRecovery), and requires both within recoveryBound.
	recovery              bool
	partialRate, callRate float64 // fault kit rates inside the relay processes
	noDuplicates          bool    // no kill and no outage: any duplicate is a failure
	killsOnly             bool    // duplicates are bounded by what the kills cut
	// broker, when set, is a private server of the scenario's own that the relays publish to
	// instead of SQS: "nats" (JetStream) or "rabbitmq"; brokerRestarts is how many times it is
	// restarted while the writers write (see restartBroker).
	broker         string
	brokerRestarts int
	// control runs deliberately broken relays (laneSpec.sabotage): the scenario passes only if
	// the checker reports what each breaks, proving that it is not blind.
	control bool
}

const (
	pgDowntime  = 3 * time.Second
	sqsDowntime = 10 * time.Second
	relayPause  = 5 * time.Second // longer than the 3s lease
	// replicationCut is how long a holder's replication path stays cut: several takeover
	// intervals, and as long as the lease, so that the old holder's retries meet a refusal and
	// then a slot another relay holds.
	replicationCut = 3 * time.Second
	// queueMissing is how long a deleted queue stays missing before it is created again.
	queueMissing = 5 * time.Second
	// recoveryBound is how soon after an outage publishing must succeed again and delivery be
	// back to full rate (unordered outboxes; ordered ones report it). The target
	// is 2 s (the relay probes at least every second); the bound leaves room for a loaded
	// 2-core machine and the race detector, and the measured value is reported.
	recoveryBound = 5 * time.Second
)

// outageFlags give the relays few attempts and short retries, so that an outage that charged
// attempts would dead-letter events within seconds, and a short publish timeout, so that a
// hung broker is detected, and probed, often.
var outageFlags = []string{"-max-attempts", "3", "-backoff-initial", "100ms", "-backoff-max", "500ms", "-publish-timeout", "2s"}

func withFlags(l laneSpec, flags ...string) laneSpec {
	l.flags = append(append([]string(nil), l.flags...), flags...)
	return l
}

// contended makes a lane's writers share keys: writers writers, perKey of them on each of keys keys.
func contended(l laneSpec, keys, writers, perKey int) laneSpec {
	l.contention = &contention{keys: keys, writers: writers, perKey: perKey}
	return l
}

func unordered(relays int) laneSpec {
	return laneSpec{relays: relays, batch: 50, concurrency: 2, lease: 3 * time.Second}
}

func ordered(relays int) laneSpec {
	l := unordered(relays)
	l.ordered = true
	return l
}

func named(l laneSpec, suffix string) laneSpec { l.suffix = suffix; return l }

// walMode switches a lane's store to the WAL mode.
func walMode(l laneSpec) laneSpec { l.wal = true; return l }

func longLease(l laneSpec) laneSpec { l.lease = 10 * time.Second; return l }

func broken(l laneSpec, suffix string, sabotage []string, expect ...string) laneSpec {
	l.suffix, l.sabotage, l.expect = suffix, sabotage, expect
	return l
}

// scenarios are sized to run in about ten minutes on a 2-core machine; scale rate and duration
// together, never drop a fault.
var scenarios = []scenario{
	{name: "relay-sigkill", lanes: []laneSpec{unordered(1)}, duration: 35 * time.Second, rate: 40, kills: 50, killsOnly: true},
	{name: "postgres-restart", lanes: []laneSpec{ordered(2)}, duration: 25 * time.Second, rate: 40, pgRestartAt: 8 * time.Second},
	{name: "sqs-outage", lanes: []laneSpec{unordered(2)}, duration: 22 * time.Second, rate: 40, sqsFreezeAt: 8 * time.Second, recovery: true},
	// A broker hung for a minute, with relays that dead-letter a message after 3 failed
	// publishes: the outage must charge no attempt (nothing dead but poison) and delivery must
	// be back to full rate within seconds of the thaw.
	{name: "long-sqs-outage", lanes: []laneSpec{named(withFlags(ordered(2), outageFlags...), "ordered"), named(withFlags(unordered(2), outageFlags...), "unordered")},

		duration: 76 * time.Second, rate: 20, sqsFreezeAt: 8 * time.Second, sqsDown: 60 * time.Second, recovery: true},
	// Every queue deleted while the relays publish, and created again 5 s later: a missing
	// queue is an outage of the destination, not a fault of the events.
	{name: "queue-missing", lanes: []laneSpec{named(withFlags(ordered(2), outageFlags...), "ordered"), named(withFlags(unordered(2), outageFlags...), "unordered")},
		duration: 20 * time.Second, rate: 25, queueMissingAt: 8 * time.Second, recovery: true},
	// Writers sharing keys, each holding its transaction open for a random moment after Add:
	// per-key order must follow commit order. Two writers per key over 20 keys, and four over
	// only 5 hot keys, while relays are killed.
	{name: "ordered-contention", lanes: []laneSpec{named(contended(ordered(2), 20, 4, 2), "two-writers"), named(contended(ordered(2), 5, 4, 4), "hot-keys")},
		duration: 30 * time.Second, rate: 30, kills: 12, killsOnly: true},
	// A relay frozen past its lease wakes up to finish publishing and acknowledging messages
	// other relays took over: the lease expiry of promise 3.
	{name: "relay-pause", lanes: []laneSpec{named(ordered(2), "ordered"), named(unordered(2), "unordered")},
		duration: 35 * time.Second, rate: 25, pauses: 6},
	{name: "four-relays-sigkill", lanes: []laneSpec{named(ordered(4), "ordered"), named(unordered(4), "unordered")},
		duration: 32 * time.Second, rate: 25, kills: 30, killsOnly: true},
	// Two relays share each outbox with a lease far longer than any publish here: a duplicate
	// would mean both published one message.
	{name: "partial-failures", lanes: []laneSpec{named(longLease(ordered(2)), "ordered"), named(longLease(unordered(2)), "unordered")},
		duration: 25 * time.Second, rate: 25, partialRate: 0.2, callRate: 0.05, noDuplicates: true},
	// Relays broken on purpose, each in a way one of the checks must catch.
	{name: "control", lanes: []laneSpec{
		broken(unordered(1), "ack-first-publish-twice", []string{"-ack-before-publish", "-publish-twice"},
			"were never delivered", "delivered more than once although"),
		// A FIFO queue and the order check, but the relay runs unordered.
		broken(ordered(1), "reversed-batches", []string{"-ordered=false", "-reverse-batches"}, "per-key order violations"),
		broken(unordered(2), "one-ms-leases", []string{"-short-claim-lease"}, "took messages another relay held"),
		// The commit-order check on contended hot keys, with a relay that ignores order.
		broken(contended(ordered(1), 5, 4, 4), "contended-reversed", []string{"-ordered=false", "-reverse-batches"}, "per-key order violations"),
	}, duration: 10 * time.Second, rate: 40, partialRate: 0.2, control: true},
	// The broker restarted three times while relays publish from PostgreSQL: stopped (NATS:
	// a clean shutdown and a crash in turn; RabbitMQ: stop_app), 2 s down, started again.
	{name: "nats-restart", broker: "nats", lanes: []laneSpec{named(ordered(2), "ordered"), named(unordered(2), "unordered")},
		duration: 24 * time.Second, rate: 25, brokerRestarts: 3},
	{name: "rabbitmq-restart", broker: "rabbitmq", lanes: []laneSpec{named(ordered(2), "ordered"), named(unordered(2), "unordered")},
		duration: 24 * time.Second, rate: 25, brokerRestarts: 3},
	{name: "mixed", lanes: []laneSpec{named(ordered(2), "ordered"), named(unordered(2), "unordered")},
		duration: 50 * time.Second, rate: 25, kills: 20, pauses: 4, pgRestartAt: 30 * time.Second, sqsFreezeAt: 10 * time.Second, partialRate: 0.1, callRate: 0.02},
	// The WAL mode (walMode lanes): the same promises when the events are streamed from a
	// replication slot that one relay holds while the other stands by. SIGKILLs hit the holder
	// about half the time, and the standby takes over; the slot's confirmed position is checked
	// against what the broker had (see checkWAL).
	{name: "wal-relay-sigkill", lanes: []laneSpec{named(walMode(ordered(2)), "ordered"), named(walMode(unordered(2)), "unordered")},
		duration: 25 * time.Second, rate: 25, kills: 20, killsOnly: true},
	// On a server of the scenario's own: a server shutting down waits for every logical
	// replication reader connected to it, the machine's other users' too.
	{name: "wal-postgres-restart", lanes: []laneSpec{walMode(ordered(2))}, duration: 18 * time.Second, rate: 30, pgRestartAt: 7 * time.Second, privatePostgres: true},
	{name: "wal-sqs-outage", lanes: []laneSpec{named(walMode(ordered(2)), "ordered"), named(walMode(unordered(2)), "unordered")},
		duration: 20 * time.Second, rate: 25, sqsFreezeAt: 6 * time.Second, recovery: true},
	// The fault kit fails publishes while relays are killed: failed events go to the table (in
	// ordered mode with every later event of their key behind them), which retries them, and a
	// new holder streams again what a killed one spilled but had not confirmed.
	{name: "wal-partial-failures", lanes: []laneSpec{named(walMode(ordered(2)), "ordered"), named(walMode(unordered(2)), "unordered")},
		duration: 12 * time.Second, rate: 25, kills: 6, partialRate: 0.2, callRate: 0.05},
	// The holder's replication connection cut (a proxy closes it and refuses new ones for 3 s)
	// while its pool still works, as a load balancer's idle cut or a partition of one path
	// would: the standby takes the slot and streams again what was not confirmed, and the old
	// holder must no longer hand out, settle or spill what it streamed. Duplicates only within
	// what the journals leave in doubt; no claim of what another relay holds.
	{name: "wal-replication-cut", lanes: []laneSpec{named(walMode(ordered(2)), "ordered"), named(walMode(unordered(2)), "unordered")},
		duration: 20 * time.Second, rate: 25, replicationCuts: 4},
	// Relays stopped cleanly (SIGTERM) and restarted, again and again, the holder two times in
	// three: a clean stop confirms what it settled and writes to the table what it had not, so
	// the next holder sends no acknowledged event again. Any duplicate fails.
	{name: "wal-clean-restarts", lanes: []laneSpec{named(walMode(ordered(2)), "ordered"), named(walMode(unordered(2)), "unordered")},
		duration: 20 * time.Second, rate: 25, cleanStops: 10, noDuplicates: true},
	// A WAL-mode relay that acknowledges batches when it claims them and publishes them half a
	// second later, killed now and then: the slot confirms what nobody published. The checks of
	// the confirmed position must catch it, and the loss.
	{name: "wal-control", lanes: []laneSpec{
		broken(walMode(unordered(2)), "ack-first", []string{"-ack-before-publish", "-publish-delay", "500ms"},
			"were never delivered", "before the broker had them", "never streamed again"),
	}, duration: 10 * time.Second, rate: 25, kills: 10, control: true},
}

// scaled shortens or lengthens the writing phase and the number of kills by factor (the
// OUTBOX_TORTURE_SCALE variable, for quick runs by hand); fault moments and outage lengths stay.
func (sc scenario) scaled(factor float64) scenario {
	sc.duration = time.Duration(float64(sc.duration) * factor)
	if sc.kills > 0 {
		sc.kills = max(1, int(float64(sc.kills)*factor))
	}
	if sc.pauses > 0 {
		sc.pauses = max(1, int(float64(sc.pauses)*factor))
	}
	if sc.cleanStops > 0 {
		sc.cleanStops = max(1, int(float64(sc.cleanStops)*factor))
	}
	if sc.replicationCuts > 0 {
		sc.replicationCuts = max(1, int(float64(sc.replicationCuts)*factor))
		sc.duration = max(sc.duration, time.Duration(sc.replicationCuts)*(replicationCut+time.Second))
	}
	// Writing goes on for 5 s after each fault has ended.
	for _, f := range []struct{ at, lasts time.Duration }{{sc.pgRestartAt, 0}, {sc.sqsFreezeAt, sc.downtime()}, {sc.queueMissingAt, queueMissing}} {
		if f.at > 0 {
			sc.duration = max(sc.duration, f.at+f.lasts+5*time.Second)
		}
	}
	return sc
}

// scaleFactor is the OUTBOX_TORTURE_SCALE variable, 1 when unset, for scaled.
func scaleFactor(t *testing.T) float64 {
	v := os.Getenv("OUTBOX_TORTURE_SCALE")
	if v == "" {
		return 1
	}
	scale, err := strconv.ParseFloat(v, 64)
	if err != nil || scale <= 0 || scale > 10 {
		t.Fatalf("OUTBOX_TORTURE_SCALE=%q: want a number in (0, 10]", v)
	}
	return scale
}

// downtime is how long the scenario's SQS freeze lasts.
func (sc scenario) downtime() time.Duration {
	if sc.sqsFreezeAt == 0 {
		return 0
	}
	if sc.sqsDown > 0 {
		return sc.sqsDown
	}
	return sqsDowntime
}
