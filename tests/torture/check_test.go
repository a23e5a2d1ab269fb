//go:build torture

package torture

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/tests/torture/journal"
)

// result is one row of the summary table.
type result struct {
	name                   string
	relays, kills          int
	written, rolledBack    int // events committed (poison included) and rolled back
	delivered              int // deliveries, duplicates included (broker redeliveries not)
	duplicates             int // deliveries beyond the first of an event
	inDoubt                int // events some relay held without a settlement that counted
	claims                 int // claims the relays' journals record
	overlaps               int // claims of a message another relay held
	lost, unexpected, dead int
	orderViolations        int
	ordered                bool
	broker                 string // the scenario's private broker; "" for SQS
	control                bool   // a lane whose relay is broken on purpose
	maxLag                 time.Duration
	retried, uncertain     int        // writer transactions retried; COMMITs that failed yet committed
	wal                    *walReport // WAL lanes only
}

// check verifies every delivery promise for one lane after it drained, reporting each broken
// one to broken, and returns the lane's summary row. Failures of the check itself (the
// database not answering) fail t.
func check(t *testing.T, ln *lane, broken func(format string, args ...any)) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l := ln.ledger
	_, heldBack := l.behind(true)
	l.mu.Lock()
	written := l.inCommitOrder() // per key, in commit order: what promise 4 compares against
	poison, ghosts, purged := l.poison, l.rolledBack, l.purged
	res := result{name: ln.name, relays: ln.spec.relays, kills: ln.fleet.killCount(), written: len(written),
		rolledBack: len(ghosts), ordered: ln.spec.ordered, broker: ln.scenario.broker, control: len(ln.spec.sabotage) > 0, retried: l.retried, uncertain: l.uncertain}
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
		broken("%s: %d of %d committed events were never delivered: %s", ln.name, rep.Lost, len(written)-len(poison), ln.describeMissing(ctx, written, poison))
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
			if !slices.Contains(heldBack, d.msg.ID) { // those waited for the purge on purpose
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
	// that counted, as the relays' journals record; in WAL mode also for one that a holder
	// killed, or cut off from the slot, had settled before its reader confirmed it, which the
	// next holder streams again (journal.Analysis.Repeatable).
	analyze := journal.Analyze
	if ln.spec.wal {
		analyze = journal.AnalyzeWAL
	}
	journals, err := analyze(ln.fleet.journalPaths(), ln.spec.lease)
	if err != nil {
		t.Fatalf("%s: %v", ln.name, err)
	}
	doubt := journals.InDoubt
	if ln.spec.wal {
		doubt = maps.Clone(doubt)
		maps.Copy(doubt, journals.Repeatable)
	}
	res.inDoubt, res.claims = len(doubt), journals.Claims
	count := map[string]int{}
	var unexplained []string
	for _, m := range delivered {
		if count[m.ID]++; count[m.ID] == 2 && !doubt[m.ID] {
			unexplained = append(unexplained, m.ID)
		}
	}
	if len(unexplained) > 0 {
		broken("%s: %d events were delivered more than once although every relay that held them settled them within their lease, e.g. %v",
			ln.name, len(unexplained), unexplained[:min(5, len(unexplained))])
	}
	if ln.scenario.noDuplicates && rep.Duplicates > 0 {
		broken("%s: %d duplicates in a scenario without kills or outages (relays stopped only cleanly, if at all)", ln.name, rep.Duplicates)
	}
	// What a kill can cut: at most a full batch in each of the relay's cycles in flight. In WAL
	// mode a holder's kill also cuts what it settled since its last status update, which the
	// journals bound: each event in doubt arrives at most twice.
	if ln.scenario.killsOnly {
		bound, what := res.kills*ln.spec.batch*ln.spec.concurrency, fmt.Sprintf("%d kills can cut", res.kills)
		if ln.spec.wal {
			bound, what = len(doubt), fmt.Sprintf("the %d events the journals show %d kills cut", len(doubt), res.kills)
		}
		if rep.Duplicates > bound {
			broken("%s: %d duplicates exceed what %s (%d)", ln.name, rep.Duplicates, what, bound)
		}
	}
	if ln.spec.wal {
		tabledAt, err := ln.db.tabled(ctx)
		if err != nil {
			t.Fatalf("%s: %v", ln.name, err)
		}
		wr := checkWAL(ln, journals, tabledAt, broken)
		// Promise 6 for the stream: a relay not holding the slot hands out only the table's.
		outside, wrong, err := notHolding(ln.fleet.journalPaths(), tabledAt)
		if err != nil {
			t.Fatalf("%s: %v", ln.name, err)
		}
		wr.outsideClaims, wr.notHolding = outside, len(wrong)
		if len(wrong) > 0 {
			broken("%s: %d messages were handed out by a relay whose reader did not hold the slot, and were not in the table, e.g. %v",
				ln.name, len(wrong), wrong[:min(3, len(wrong))])
		}
		for id := range tabledAt {
			if !poison[id] {
				wr.tabled++
			}
		}
		// Promise 3 as the relays saw it: an acknowledged event handed out again, outside what
		// the journals leave in doubt, was sent again even where the broker hides it.
		again, err := claimedAfterAck(ln.fleet.journalPaths())
		if err != nil {
			t.Fatalf("%s: %v", ln.name, err)
		}
		var resent []string
		for id := range again {
			if !doubt[id] {
				resent = append(resent, id)
			}
		}
		wr.reclaimed, wr.resent = len(again), len(resent)
		if len(resent) > 0 {
			slices.Sort(resent)
			broken("%s: %d acknowledged events were handed out again although no relay that held them was cut before confirming them, e.g. %v",
				ln.name, len(resent), resent[:min(5, len(resent))])
		}
		res.wal = &wr
	}

	// Promise 6: no relay claims (and so publishes) a message another relay holds.
	res.overlaps = len(journals.Overlaps)
	if len(journals.Overlaps) > 0 {
		broken("%s: %d claims took messages another relay held under a valid lease, e.g. %v",
			ln.name, len(journals.Overlaps), journals.Overlaps[:min(3, len(journals.Overlaps))])
	}

	// Promise 5: every poison event is dead with its reason, nothing else is dead, and nothing
	// is left pending.
	counts, err := ln.outbox.inspector().Counts(ctx)
	if err != nil {
		t.Fatalf("%s: counts: %v", ln.name, err)
	}
	res.dead = int(counts.Dead)
	if counts.Pending != 0 {
		broken("%s: %d events still pending after the drain", ln.name, counts.Pending)
	}
	// Blockers of ordered lanes were purged (releaseBlockedKeys checked their reason before).
	dead, err := ln.outbox.inspector().ListDead(ctx, outbox.DeadFilter{Limit: len(poison) + 100})
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

// describeMissing says where some undelivered events are in the outbox table.
func (ln *lane) describeMissing(ctx context.Context, written []*outbox.Message, poison map[string]bool) string {
	var missing []string
	for _, m := range written {
		if !poison[m.ID] && ln.consumer.has([]string{m.ID}) == 0 {
			missing = append(missing, m.ID)
		}
	}
	var b strings.Builder
	for _, id := range missing[:min(5, len(missing))] {
		r, err := ln.outbox.row(ctx, id)
		if err != nil {
			fmt.Fprintf(&b, "%s (not in the table: %v); ", id, err)
			continue
		}
		fmt.Fprintf(&b, "%s (%s, lease %s, %d attempts, %q); ", id, r.status, r.owner, r.attempts, r.lastErr)
	}
	return b.String()
}

// jsonEqual reports whether a and b are the same JSON value (the database reformats JSON).
func jsonEqual(a, b []byte) bool {
	if len(bytes.TrimSpace(a)) == 0 || len(bytes.TrimSpace(b)) == 0 {
		return len(bytes.TrimSpace(a)) == len(bytes.TrimSpace(b))
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

// summary renders the results as a Markdown table.
func summary(results []result) string {
	var b strings.Builder
	b.WriteString("| scenario | mode | relays | kills | written | rolled back | delivered | duplicates | in doubt | lost | dead | order violations | overlapping claims | max lag |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range results {
		mode := "unordered"
		switch {
		case r.control:
			mode = "relay broken on purpose"
		case r.ordered && r.broker != "":
			mode = "ordered, " + r.broker
		case r.ordered:
			mode = "ordered, FIFO"
		}
		if r.wal != nil {
			mode = "WAL, " + mode
		}
		order := fmt.Sprint(r.orderViolations)
		if !r.ordered {
			order = "n/a"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s | %d | %v |\n",
			r.name, mode, r.relays, r.kills, r.written, r.rolledBack, r.delivered, r.duplicates, r.inDoubt, r.lost, r.dead, order, r.overlaps, r.maxLag.Round(100*time.Millisecond))
	}
	return b.String()
}

// summaryRows collects the rows of every scenario of a test for its summary tables.
type summaryRows struct {
	results    []result
	recoveries []recovery
}

// add appends one scenario's rows (runScenario's results).
func (r *summaryRows) add(results []result, recoveries []recovery) {
	r.results = append(r.results, results...)
	r.recoveries = append(r.recoveries, recoveries...)
}

// tables renders the results and, when a scenario measured any, the recoveries.
func (r *summaryRows) tables() string {
	table := summary(r.results)
	if recs := recoverySummary(r.recoveries); recs != "" {
		table += "\n" + recs
	}
	return table
}
