//go:build torture

package torture

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/tests/torture/journal"
)

// mysqlLane is a running laneSpec whose outbox is in MySQL: its embedded lane holds the queue,
// ledger, fleet and consumer, as for PostgreSQL (its db is nil), so the fault and recovery code
// of the PostgreSQL scenarios (killRandomly, checkRecovery) runs on it unchanged; mdb is its
// database.
type mysqlLane struct {
	*lane
	mdb      *mysqlDatabase
	scenario mysqlScenario
}

// mysqlCheck is check for a MySQL lane: it verifies every delivery promise after the lane
// drained, reporting each broken one to broken, and returns the lane's summary row.
func mysqlCheck(t *testing.T, ln *mysqlLane, broken func(format string, args ...any)) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l := ln.ledger
	_, heldBack := l.behind(true)
	l.mu.Lock()
	written := l.inCommitOrder()
	poison, ghosts, purged := l.poison, l.rolledBack, l.purged
	res := result{name: ln.name, relays: ln.spec.relays, kills: ln.fleet.killCount(), written: len(written),
		rolledBack: len(ghosts), ordered: ln.spec.ordered, control: len(ln.spec.sabotage) > 0, retried: l.retried, uncertain: l.uncertain}
	l.mu.Unlock()

	deliveries := ln.consumer.snapshot()
	delivered := make([]*outbox.Message, len(deliveries))
	for i, d := range deliveries {
		delivered[i] = d.msg
	}
	mayMiss := make([]string, 0, len(poison))
	for id := range poison {
		mayMiss = append(mayMiss, id)
	}
	// Promises 1, 2 and 4: nothing lost, nothing rolled back delivered, per-key order kept.
	rep := outboxtest.Compare(written, delivered, outboxtest.DeliveryCheck{Ordered: ln.spec.ordered, MayMiss: mayMiss})
	res.delivered, res.duplicates, res.lost, res.unexpected, res.orderViolations = rep.Delivered, rep.Duplicates, rep.Lost, rep.Unexpected, rep.OrderViolations
	if rep.Lost > 0 {
		broken("%s: %d of %d committed events were never delivered: %s", ln.name, rep.Lost, len(written)-len(poison), ln.describeMySQLMissing(ctx, written, poison))
	}
	if rep.OrderViolations > 0 {
		broken("%s: %d per-key order violations", ln.name, rep.OrderViolations)
	}
	if rep.Unexpected > 0 {
		n := 0
		for _, m := range delivered {
			if ghosts[m.ID] {
				n++
			}
		}
		broken("%s: %d delivered events were never committed (%d of them from rolled-back transactions)", ln.name, rep.Unexpected, n)
	}

	// What arrived is what was written.
	byID := make(map[string]*outbox.Message, len(written))
	for _, m := range written {
		byID[m.ID] = m
	}
	first := map[string]bool{}
	var wrong []string
	for _, d := range deliveries {
		w, ok := byID[d.msg.ID]
		if !ok {
			continue
		}
		if poison[d.msg.ID] {
			broken("%s: poison event %s was delivered", ln.name, d.msg.ID)
		}
		if d.msg.Type != w.Type || d.msg.Key != w.Key || !jsonEqual(d.msg.Payload, w.Payload) ||
			!jsonEqual(d.msg.Result, w.Result) || !d.msg.CreatedAt.Equal(w.CreatedAt) ||
			(ln.spec.ordered && d.group != w.Key) {
			wrong = append(wrong, fmt.Sprintf("%s: got type %s key %s group %s payload %s result %s at %v; wrote %s %s %s %s at %v",
				w.ID, d.msg.Type, d.msg.Key, d.group, d.msg.Payload, d.msg.Result, d.msg.CreatedAt, w.Type, w.Key, w.Payload, w.Result, w.CreatedAt))
		}
		if !first[d.msg.ID] {
			first[d.msg.ID] = true
			if !slices.Contains(heldBack, d.msg.ID) {
				res.maxLag = max(res.maxLag, d.at.Sub(w.CreatedAt))
			}
		}
	}
	if len(wrong) > 0 {
		broken("%s: %d deliveries differ from what was written, e.g. %v", ln.name, len(wrong), wrong[:min(3, len(wrong))])
	}
	ln.consumer.mu.Lock()
	if len(ln.consumer.bad) > 0 {
		broken("%s: %d bodies did not decode, e.g. %s", ln.name, len(ln.consumer.bad), ln.consumer.bad[0])
	}
	ln.consumer.mu.Unlock()

	// Promise 3: a duplicate only for an event whose lease a relay lost without a settlement
	// that counted, as the relays' journals record.
	journals, err := journal.Analyze(ln.fleet.journalPaths(), ln.spec.lease)
	if err != nil {
		t.Fatalf("%s: %v", ln.name, err)
	}
	res.inDoubt, res.claims = len(journals.InDoubt), journals.Claims
	count := map[string]int{}
	var unexplained []string
	for _, m := range delivered {
		if count[m.ID]++; count[m.ID] == 2 && !journals.InDoubt[m.ID] {
			unexplained = append(unexplained, m.ID)
		}
	}
	if len(unexplained) > 0 {
		broken("%s: %d events were delivered more than once although every relay that held them settled them within their lease, e.g. %v",
			ln.name, len(unexplained), unexplained[:min(5, len(unexplained))])
	}
	// What a kill can cut: at most a full batch in each of the relay's cycles in flight.
	if bound := res.kills * ln.spec.batch * ln.spec.concurrency; ln.scenario.killsOnly && rep.Duplicates > bound {
		broken("%s: %d duplicates exceed what %d kills can cut (%d)", ln.name, rep.Duplicates, res.kills, bound)
	}

	// Promise 6: no relay claims (and so publishes) a message another relay holds.
	res.overlaps = len(journals.Overlaps)
	if len(journals.Overlaps) > 0 {
		broken("%s: %d claims took messages another relay held under a valid lease, e.g. %v",
			ln.name, len(journals.Overlaps), journals.Overlaps[:min(3, len(journals.Overlaps))])
	}

	// Promise 5: every poison event is dead with its reason, nothing else is dead, and nothing
	// is left pending.
	counts, err := ln.mdb.store.Counts(ctx)
	if err != nil {
		t.Fatalf("%s: counts: %v", ln.name, err)
	}
	res.dead = int(counts.Dead)
	if counts.Pending != 0 {
		broken("%s: %d events still pending after the drain", ln.name, counts.Pending)
	}
	dead, err := ln.mdb.store.ListDead(ctx, outbox.DeadFilter{Limit: len(poison) + 100})
	if err != nil {
		t.Fatalf("%s: list dead: %v", ln.name, err)
	}
	for _, d := range dead {
		switch {
		case !poison[d.ID]:
			broken("%s: event %s (%s) is dead although it is not poison: %s", ln.name, d.ID, d.Type, d.LastError)
		case !strings.Contains(d.LastError, "MaxMessageBytes") || d.DiedAt.IsZero():
			broken("%s: poison event %s is dead without its reason: %q, died at %v", ln.name, d.ID, d.LastError, d.DiedAt)
		}
	}
	if len(dead) != len(poison)-len(purged) {
		broken("%s: %d events are dead, want the %d poison ones", ln.name, len(dead), len(poison)-len(purged))
	}

	if crashes := ln.fleet.crashList(); len(crashes) > 0 {
		broken("%s: %d relay processes exited by themselves: %v", ln.name, len(crashes), crashes)
	}
	return res
}

// describeMySQLMissing says where some undelivered events are in the outbox table.
func (ln *mysqlLane) describeMySQLMissing(ctx context.Context, written []*outbox.Message, poison map[string]bool) string {
	var missing []string
	for _, m := range written {
		if !poison[m.ID] && ln.consumer.has([]string{m.ID}) == 0 {
			missing = append(missing, m.ID)
		}
	}
	var b strings.Builder
	for _, id := range missing[:min(5, len(missing))] {
		var status, owner, lastErr string
		var attempts int
		err := ln.mdb.store.DB().QueryRowContext(ctx, "SELECT status, COALESCE(lease_owner, ''), attempts, COALESCE(last_error, '') FROM outbox WHERE id = ?", id).
			Scan(&status, &owner, &attempts, &lastErr)
		if err != nil {
			fmt.Fprintf(&b, "%s (not in the table: %v); ", id, err)
			continue
		}
		fmt.Fprintf(&b, "%s (%s, lease %s, %d attempts, %q); ", id, status, owner, attempts, lastErr)
	}
	return b.String()
}

// checkMySQLLanes is checkLanes for MySQL lanes: a control lane passes when the checker reports
// the breakage its relay was given.
func checkMySQLLanes(t *testing.T, sc mysqlScenario, lanes []*mysqlLane) []result {
	results := make([]result, len(lanes))
	for i, ln := range lanes {
		var broken []string
		results[i] = mysqlCheck(t, ln, func(format string, args ...any) {
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
			"%d delivered, %d duplicates, %d in doubt, %d lost, %d dead, %d held back by a dead head of their key until it was purged, max lag %v; %d kills, %d claims; consumer: %d broker redeliveries, %d errors",
			r.name, r.written, ln.ledger.commits, ln.ledger.rollbacks, r.retried, r.uncertain,
			r.delivered, r.duplicates, r.inDoubt, r.lost, r.dead, ln.ledger.heldBack, r.maxLag.Round(time.Millisecond), r.kills, r.claims, redelivered, consumerErrs)
	}
	return results
}

// waitMySQLDrained waits until every lane's consumer has every committed event but poison and
// what blockers hold back, and no event is pending in its outbox but those held back.
func waitMySQLDrained(ctx context.Context, lanes []*mysqlLane, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		done := true
		var status []string
		for _, ln := range lanes {
			want := ln.ledger.expected()
			_, held := ln.ledger.blocked()
			got := ln.consumer.has(want)
			counts, err := ln.mdb.store.Counts(ctx)
			pending := fmt.Sprint(counts.Pending)
			if err != nil {
				pending = err.Error()
			}
			status = append(status, fmt.Sprintf("%s: %d of %d delivered, pending %s (want %d held back)", ln.name, got, len(want), pending, len(held)))
			if got < len(want) || err != nil || counts.Pending != int64(len(held)) {
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

// releaseMySQLBlockedKeys is releaseBlockedKeys for a MySQL lane: the dead head of a key held
// back the key's later events only; purged, they follow.
func releaseMySQLBlockedKeys(t *testing.T, ctx context.Context, ln *mysqlLane) bool {
	t.Helper()
	blockers, followers := ln.ledger.blocked()
	if len(blockers) == 0 {
		return false
	}
	if n := ln.consumer.has(followers); n > 0 {
		t.Errorf("%s: %d of the %d events behind a dead event of their key arrived before it was purged", ln.name, n, len(followers))
	}
	dead, err := ln.mdb.store.ListDead(ctx, outbox.DeadFilter{IDs: blockers})
	if err != nil {
		t.Fatalf("%s: list the blockers: %v", ln.name, err)
	}
	if len(dead) != len(blockers) {
		t.Errorf("%s: %d of %d blockers are dead", ln.name, len(dead), len(blockers))
	}
	for _, d := range dead {
		if !strings.Contains(d.LastError, "MaxMessageBytes") {
			t.Errorf("%s: blocker %s is dead without its reason: %q", ln.name, d.ID, d.LastError)
		}
	}
	n, err := ln.mdb.store.Purge(ctx, outbox.DeadFilter{IDs: blockers})
	if err != nil {
		t.Fatalf("%s: purge the blockers: %v", ln.name, err)
	}
	if n != len(blockers) {
		t.Errorf("%s: purged %d blockers, want %d", ln.name, n, len(blockers))
	}
	ln.ledger.mu.Lock()
	for _, id := range blockers {
		ln.ledger.purged[id] = true
	}
	ln.ledger.heldBack += len(followers)
	ln.ledger.mu.Unlock()
	t.Logf("%s: a dead event held back %d later events of its key while every other key flowed; purged, they followed", ln.name, len(followers))
	return true
}
