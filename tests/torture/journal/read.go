package journal

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Analysis is what the journals of every relay process of a run prove.
type Analysis struct {
	// InDoubt holds the messages whose publish may have reached the broker without an
	// acknowledgement that counted: claimed and then neither acknowledged within a lease of
	// the claim (the process was killed, the ack was abandoned, or it came so late that another
	// relay may have claimed the message again) nor failed in a way that certainly never sent
	// it. These, and only these, may be delivered more than once.
	InDoubt map[string]bool
	// Overlaps describes each claim that certainly happened while another process held the
	// message under a valid lease: a broken promise that no two relays hold one message.
	Overlaps []string
	// Claims counts the claim lines read.
	Claims int
	// Spilled holds the messages some relay nacked with an attempt charged or as dead (S
	// lines): the ones the WAL mode writes to the table instead of publishing them.
	Spilled map[string]bool

	// The rest is AnalyzeWAL's only.

	// Repeatable holds the messages that the WAL mode may stream again even when the relay that
	// held them settled them: a settlement counts for the slot only once the holder has
	// confirmed past it, and a holder killed, or whose reader lost the slot, before its next
	// status update leaves the next holder to stream it again from the confirmed position.
	// Precisely: claimed by a process that had taken the slot before and was killed after the
	// claim, lost the slot after it or did not hold it at the time, and claimed again later by
	// another process (those it had not settled are in InDoubt too). With InDoubt, these are
	// the messages that may arrive more than once in WAL mode.
	Repeatable map[string]bool
	// NotClaimedAgain describes each message that a killed relay held without having begun
	// to settle it (no ack or nack line after its claim) and that no other process claimed
	// after it: nothing streamed it again, so the slot's confirmed position had passed a
	// message nobody had published or spilled (or, for a message from the table, its lease
	// never ran out).
	NotClaimedAgain []string
	// Takes counts the times a relay's reader took the slot, Handovers those of them by
	// another process than the one that had taken it last, HolderKills the kills of a relay
	// while its reader held the slot.
	Takes, Handovers, HolderKills int
	// Takeovers holds, for each kill of a holder, how long it took another relay to take the
	// slot (from the SIGKILL to its reader's take); a kill no take followed has none.
	Takeovers []time.Duration
}

// hold is one process's lease on one message, as its journal bounds it.
type hold struct {
	proc                 string
	claimStart, claimEnd int64 // unix ms around the claim call
	releaseStart         int64 // start of the ack or nack that ended it; MaxInt64 if none
	releaseBegun         int64 // first 'R' line: an ack or nack that may have ended it; MaxInt64 if none
}

// process is what one journal says about its process besides the holds.
type process struct {
	slot       []slotMark // H and L lines, in journal order
	killed     bool
	signalled  int64 // when the SIGKILL was sent (K line)
	periods    []period
	heldAtKill bool
}

type slotMark struct {
	held bool
	at   int64
}

// period is a time the process's reader held the slot: [from, to), to MaxInt64 when it still
// held it when the process stopped cleanly.
type period struct{ from, to int64 }

// Analyze reads the journals and returns what they prove for a lease of lease.
//
// A journal's last line may be cut short by a SIGKILL in the middle of a write; such a line
// is skipped, which leaves its claims unsettled (in doubt) and never proves an overlap.
func Analyze(paths []string, lease time.Duration) (Analysis, error) {
	a, holds, _, err := read(paths, lease)
	if err != nil {
		return Analysis{}, err
	}
	a.findOverlaps(holds, lease.Milliseconds(), func(hold) int64 { return math.MaxInt64 })
	return a, nil
}

// AnalyzeWAL is Analyze for relays of the PostgreSQL store's WAL mode, whose journals also
// record the slot (H and L lines) and the kills (K lines). Besides Repeatable,
// NotClaimedAgain and the takes, one rule differs: a process that had taken the slot holds its
// messages only until it is killed, because their leases live in its memory alone (the
// next holder streams them again, rightly); in table mode a killed relay's leases live on in
// the table until they expire.
func AnalyzeWAL(paths []string, lease time.Duration) (Analysis, error) {
	a, holds, procs, err := read(paths, lease)
	if err != nil {
		return Analysis{}, err
	}
	a.Repeatable = map[string]bool{}
	type take struct {
		proc string
		at   int64
	}
	var takes []take
	for name, p := range procs {
		p.periods, p.heldAtKill = holding(p)
		if p.heldAtKill {
			a.HolderKills++
		}
		for _, m := range p.slot {
			if m.held {
				takes = append(takes, take{name, m.at})
			}
		}
	}
	sort.Slice(takes, func(i, j int) bool { return takes[i].at < takes[j].at })
	a.Takes = len(takes)
	for name, p := range procs {
		if !p.heldAtKill {
			continue
		}
		for _, tk := range takes {
			if tk.proc != name && tk.at >= p.signalled {
				a.Takeovers = append(a.Takeovers, time.Duration(tk.at-p.signalled)*time.Millisecond)
				break
			}
		}
	}
	slices.Sort(a.Takeovers)
	for i := 1; i < len(takes); i++ {
		if takes[i].proc != takes[i-1].proc {
			a.Handovers++
		}
	}
	ids := make([]string, 0, len(holds))
	for id := range holds {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		hs := holds[id]
		for _, h := range hs {
			p := procs[h.proc]
			claimedAgain := false
			for _, q := range hs {
				if q.proc != h.proc && q.claimStart > h.claimStart {
					claimedAgain = true
					break
				}
			}
			if claimedAgain && p.cut(h.claimStart) {
				a.Repeatable[id] = true
			}
			if p.killed && h.releaseStart == math.MaxInt64 && h.releaseBegun == math.MaxInt64 && !claimedAgain {
				a.NotClaimedAgain = append(a.NotClaimedAgain, fmt.Sprintf("%s: claimed by %s at %d, killed at %d with it unsettled, never claimed again",
					id, h.proc, h.claimStart, p.signalled))
			}
		}
	}
	a.findOverlaps(holds, lease.Milliseconds(), func(h hold) int64 {
		p := procs[h.proc]
		if p.killed && len(p.periods) > 0 && h.claimStart >= p.periods[0].from {
			return p.signalled
		}
		return math.MaxInt64
	})
	return a, nil
}

// holding turns a process's H and L lines (and its kill) into the periods it held the slot,
// and says whether it held the slot when it was killed.
func holding(p *process) (held []period, atKill bool) {
	marks := append([]slotMark(nil), p.slot...)
	sort.SliceStable(marks, func(i, j int) bool { return marks[i].at < marks[j].at })
	var out []period
	open := false
	for _, m := range marks {
		switch {
		case m.held && open: // taken again without a loss journaled: the earlier hold ended
			out[len(out)-1].to = m.at
			out = append(out, period{from: m.at, to: math.MaxInt64})
		case m.held:
			out = append(out, period{from: m.at, to: math.MaxInt64})
			open = true
		case open:
			out[len(out)-1].to = m.at
			open = false
		}
	}
	if open && p.killed {
		out[len(out)-1].to = p.signalled
	}
	return out, open && p.killed
}

// cut reports whether a message the process claimed at c may be streamed again by another
// process after the process settled it: the process had taken the slot before c (before
// that, it claimed from the table only) and did not hold it from c until it stopped cleanly.
func (p *process) cut(c int64) bool {
	if len(p.periods) == 0 || c < p.periods[0].from {
		return false
	}
	for _, h := range p.periods {
		if h.from <= c && c < h.to {
			return h.to != math.MaxInt64
		}
	}
	return true
}

func read(paths []string, lease time.Duration) (Analysis, map[string][]hold, map[string]*process, error) {
	a := Analysis{InDoubt: map[string]bool{}, Spilled: map[string]bool{}}
	holds := map[string][]hold{}
	procs := map[string]*process{}
	for _, path := range paths {
		p, err := a.readOne(path, lease.Milliseconds(), holds)
		if err != nil {
			return Analysis{}, nil, nil, err
		}
		procs[filepath.Base(path)] = p
	}
	return a, holds, procs, nil
}

func (a *Analysis) readOne(path string, lease int64, holds map[string][]hold) (*process, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	defer func() { _ = f.Close() }() // read only: Close has nothing to lose
	proc := filepath.Base(path)
	p := &process{}
	open := map[string]int{} // message ID -> index in holds[id] of this process's current hold
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		op, start, end, items, ok := parse(sc.Text())
		if !ok {
			continue
		}
		switch op {
		case 'H', 'L':
			p.slot = append(p.slot, slotMark{held: op == 'H', at: start})
		case 'K':
			p.killed, p.signalled = true, start
		case 'S':
			for _, id := range items {
				a.Spilled[id] = true
			}
		case 'C':
			a.Claims++
			for _, id := range items {
				if i, held := open[id]; held { // claimed again without a settlement: the old lease ran out
					holds[id][i].releaseStart = start
					a.InDoubt[id] = true
				}
				open[id] = len(holds[id])
				holds[id] = append(holds[id], hold{proc: proc, claimStart: start, claimEnd: end, releaseStart: math.MaxInt64, releaseBegun: math.MaxInt64})
			}
		case 'R':
			for _, id := range items {
				if i, held := open[id]; held {
					h := &holds[id][i]
					h.releaseBegun = min(h.releaseBegun, start)
				}
			}
		case 'A', 'N':
			for _, item := range items {
				id, mark, _ := strings.Cut(item, ":")
				i, held := open[id]
				if !held {
					continue
				}
				h := &holds[id][i]
				h.releaseStart = start
				delete(open, id)
				switch {
				case op == 'N' && mark != "u":
					a.InDoubt[id] = true
				case op == 'A' && end-h.claimStart >= lease:
					// The ack may have run after the lease ended, when another relay may have
					// claimed the message: the store ignores such an ack without an error.
					a.InDoubt[id] = true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	for id := range open {
		a.InDoubt[id] = true
	}
	return p, nil
}

// findOverlaps reports claims made while another process certainly held the message. Process P
// holds a message from the moment its claim committed (at the latest at claimEnd) until its
// lease ends (at the earliest claimStart+lease), its ack or nack runs (at the earliest
// releaseStart) or ends(hold) says it let go. A claim by Q certainly ran in that window when it
// started after P's claimEnd and ended before the window closed. Timestamps are whole
// milliseconds, rounded down, so the comparisons leave a millisecond of margin on each side.
func (a *Analysis) findOverlaps(holds map[string][]hold, lease int64, ends func(hold) int64) {
	for id, hs := range holds {
		for _, p := range hs {
			closes := min(p.releaseStart, p.releaseBegun, p.claimStart+lease, ends(p))
			for _, q := range hs {
				if q.proc == p.proc {
					continue
				}
				if q.claimStart > p.claimEnd && q.claimEnd+1 < closes {
					a.Overlaps = append(a.Overlaps, fmt.Sprintf("%s: %s claimed it at %d-%d while %s held it (claimed %d-%d, released from %d)",
						id, q.proc, q.claimStart, q.claimEnd, p.proc, p.claimStart, p.claimEnd, p.releaseStart))
				}
			}
		}
	}
}

// parse splits one journal line; ok is false for a malformed (cut) line. The items of an H, L
// or K line are one word, not message IDs.
func parse(s string) (op byte, start, end int64, items []string, ok bool) {
	fields := strings.SplitN(s, " ", 4)
	if len(fields) != 4 || len(fields[0]) != 1 || !strings.Contains("CANRSHLK", fields[0]) || fields[3] == "" {
		return 0, 0, 0, nil, false
	}
	start, err1 := strconv.ParseInt(fields[1], 10, 64)
	end, err2 := strconv.ParseInt(fields[2], 10, 64)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0, 0, nil, false
	}
	op = fields[0][0]
	if strings.IndexByte("HLK", op) >= 0 {
		return op, start, end, []string{fields[3]}, !strings.Contains(fields[3], " ")
	}
	items = strings.Split(fields[3], ",")
	for _, it := range items {
		id, _, _ := strings.Cut(it, ":")
		if len(id) != 36 {
			return 0, 0, 0, nil, false
		}
	}
	return op, start, end, items, true
}

// FirstAckAfter returns the start of the first acknowledgement, in any of the journals, that
// began at or after t: the first publish a relay saw succeed from then on. ok is false when
// there is none.
func FirstAckAfter(paths []string, t time.Time) (first time.Time, ok bool, err error) {
	from := t.UnixMilli()
	best := int64(math.MaxInt64)
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("journal: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 1<<16), 1<<24)
		for sc.Scan() {
			if op, start, _, _, valid := parse(sc.Text()); valid && op == 'A' && start >= from && start < best {
				best = start
			}
		}
		err = sc.Err()
		_ = f.Close() // read only: Close has nothing to lose
		if err != nil {
			return time.Time{}, false, fmt.Errorf("journal: %s: %w", path, err)
		}
	}
	if best == math.MaxInt64 {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(best), true, nil
}
